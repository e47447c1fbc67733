"""The zygote: a preloaded fork server that starts every resource process.

The supervisor imports the plugins, then forks the zygote before it starts any
thread. The zygote inherits the plugins, imports paho and sgframework once
(:func:`preload`, after the fork: the supervisor never loads them), freezes its heap for
copy-on-write (``gc.freeze()``), and then forks one process per resource on
request, so a resource starts in milliseconds and shares most of its memory.

Protocol on a SOCK_SEQPACKET socket pair, one pickled dict per packet:

- supervisor -> zygote: ``{"op": "spawn", "token": int, "spec": ChildSpec}``
  with file descriptors (events, stdout, stderr) attached;
- zygote -> supervisor: ``{"op": "spawned", "token", "pid"}``,
  ``{"op": "spawn_failed", "token", "error"}``, ``{"op": "exited", "pid", "status"}``
  (status: exit code, or minus the signal number).

When the supervisor's end closes (it exited, or was killed), the zygote
sends SIGTERM to every resource's process group, SIGKILL to what is left
after a grace period, and exits: no resource outlives its supervisor.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import os
import pickle
import selectors
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from sghost.plugins import PluginRegistry
from sghost.process import events, oslevel
from sghost.process.spec import ChildSpec

Runner = Callable[[ChildSpec, PluginRegistry, events.EventWriter, list[int]], int]
ConfigureLogging = Callable[[str], None]

MAX_PACKET = 1 << 20
PARENT_DIED = signal.SIGUSR1
"""The zygote's parent-death signal (SIGTERM is ignored: it may be meant for the whole group)."""
ORPHAN_GRACE = 1.5


def send_packet(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = pickle.dumps(message)
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def receive_packet(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """Return one message and its file descriptors; ``(None, [])`` at end of stream."""
    data, fds, _flags, _address = socket.recv_fds(sock, MAX_PACKET, 8)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    return pickle.loads(data), list(fds)


class Zygote:
    """The fork server's side: runs in the forked zygote process until the supervisor goes."""

    def __init__(
        self,
        sock: socket.socket,
        registry: PluginRegistry,
        runners: dict[str, Runner],
        configure_logging: ConfigureLogging | None = None,
    ) -> None:
        self.sock = sock
        self.registry = registry
        self.runners = runners
        self.configure_logging = configure_logging
        """Sets up a child's logging; called here, before the fork, so that children share the result."""
        self.log_level: str | None = None
        self.children: set[int] = set()
        self.selector = selectors.DefaultSelector()
        self.wakeup_r, self.wakeup_w = os.pipe()

    def serve(self) -> None:
        os.set_blocking(self.wakeup_w, False)
        os.set_blocking(self.wakeup_r, False)
        signal.set_wakeup_fd(self.wakeup_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(PARENT_DIED, lambda *_: None)
        # A SIGTERM or SIGINT for the whole group or cgroup (Ctrl-C, systemd's
        # KillMode=control-group) is the supervisor's to act on: it stops the
        # resources in order. The zygote ends when the supervisor's socket closes.
        for ignored in (signal.SIGINT, signal.SIGHUP):
            signal.signal(ignored, signal.SIG_IGN)
        # SIGTERM is blocked, not ignored: a child inherits the mask, so a SIGTERM
        # sent before it has installed its handler waits instead of being lost.
        signal.signal(signal.SIGTERM, lambda *_: None)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        oslevel.set_parent_death_signal(PARENT_DIED)
        self.selector.register(self.sock, selectors.EVENT_READ, "control")
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, "signal")
        # What every child would otherwise do after the fork, copying the pages it touches.
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        gc.freeze()
        while True:
            for key, _mask in self.selector.select():
                if key.data == "control" and not self._handle_request():
                    self._shutdown()
                    return
                if key.data == "signal" and self._handle_signals():
                    self._shutdown()
                    return

    def _handle_request(self) -> bool:
        try:
            message, fds = receive_packet(self.sock)
        except (ConnectionResetError, OSError):
            return False
        if message is None:
            return False
        if message.get("op") == "spawn":
            self._spawn(message["token"], message["spec"], fds)
        else:
            for fd in fds:
                os.close(fd)
        return True

    def _handle_signals(self) -> bool:
        """Reap children; return True when the supervisor has died."""
        try:
            received = os.read(self.wakeup_r, 512)
        except BlockingIOError:
            received = b""
        self._reap()
        return PARENT_DIED in received

    def _spawn(self, token: int, spec: ChildSpec, fds: list[int]) -> None:
        self._configure_logging_for(spec)
        try:
            pid = os.fork()
        except OSError as error:
            for fd in fds:
                os.close(fd)
            self._tell({"op": "spawn_failed", "token": token, "error": str(error)})
            return
        if pid == 0:
            self._become_child(spec, fds)
        for fd in fds:
            os.close(fd)
        # The child makes itself a group leader too; doing it here as well means the
        # group exists before the supervisor hears of the pid and may signal it.
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        self.children.add(pid)
        self._tell({"op": "spawned", "token": token, "pid": pid})

    def _become_child(self, spec: ChildSpec, fds: list[int]) -> None:
        """In the forked child: detach from the zygote, wire the pipes, run the resource."""
        code = 1
        try:
            with contextlib.suppress(OSError):  # the zygote may have done it already
                os.setpgid(0, 0)
            oslevel.set_parent_death_signal(signal.SIGKILL)
            signal.set_wakeup_fd(-1)
            for inherited in (signal.SIGCHLD, signal.SIGHUP, PARENT_DIED):
                signal.signal(inherited, signal.SIG_DFL)
            self.selector.close()
            self.sock.close()
            os.close(self.wakeup_r)
            os.close(self.wakeup_w)
            event_fd, out_fd, err_fd, *inbound = fds
            os.dup2(out_fd, 1)
            os.dup2(err_fd, 2)
            os.close(out_fd)
            os.close(err_fd)
            os.environ.update(spec.environment)  # the manifest's environment / env_file
            code = self._run(spec, events.EventWriter(event_fd), inbound)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _configure_logging_for(self, spec: ChildSpec) -> None:
        """Set the children's logging up in the zygote (the log goes to fd 2, the child's stderr after the fork).

        Done once per log level rather than in every child: setting a level clears every
        logger's cache, which would copy each logger's memory into each child.
        """
        if self.configure_logging is not None and spec.log_level != self.log_level:
            self.configure_logging(spec.log_level)
            self.log_level = spec.log_level
            gc.freeze()

    def _run(self, spec: ChildSpec, channel: events.EventWriter, inbound: list[int]) -> int:
        return self.runners[spec.role](spec, self.registry, channel, inbound)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self._tell({"op": "exited", "pid": pid, "status": oslevel.status_from_wait(status)})

    def _tell(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # the supervisor is gone; _shutdown follows
            send_packet(self.sock, message)

    def _shutdown(self) -> None:
        """The supervisor is gone or asks us to end: stop every resource, then exit."""
        for pid in list(self.children):
            oslevel.kill_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + ORPHAN_GRACE
        while self.children and time.monotonic() < deadline:
            self._reap()
            if self.children:
                time.sleep(0.02)  # children are exiting; SIGCHLD may be coalesced, so poll briefly
        for pid in list(self.children):
            oslevel.kill_group(pid, signal.SIGKILL)
        deadline = time.monotonic() + 1.0
        while self.children and time.monotonic() < deadline:
            self._reap()
            if self.children:
                time.sleep(0.02)


def preload(runners: Mapping[str, str]) -> dict[str, Runner]:
    """Import in the zygote what every child needs, so that children share it instead of loading it.

    ``runners`` maps a role to the ``module:function`` that runs a process of
    that role. The supervisor itself never imports these (paho and ssl alone
    are about 9 MiB), so it names them instead of importing them.
    """
    import encodings.idna  # noqa: F401  (getaddrinfo loads it in every child otherwise)

    import sgframework.framework  # noqa: F401

    loaded: dict[str, Runner] = {}
    for role, target in runners.items():
        module_name, _, function = target.partition(":")
        loaded[role] = getattr(importlib.import_module(module_name), function)
    return loaded


def start_zygote(registry: PluginRegistry, runners: Mapping[str, str]) -> tuple[int, socket.socket]:
    """Fork the zygote; return its pid and the supervisor's end of the socket pair.

    ``runners``: role (``ChildSpec.role``) -> ``"module:function"`` called as
    ``function(spec, registry, channel, inbound_fds)`` in the new process.

    Call before the supervisor starts any thread: forking a threaded process
    copies locks in whatever state other threads left them.
    """
    parent_end, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            parent_end.close()
            runners_loaded = preload(runners)
            from sghost.process.child import configure_child_logging, warm_up

            warm_up()

            Zygote(zygote_end, registry, runners_loaded, configure_child_logging).serve()
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    zygote_end.close()
    return pid, parent_end
