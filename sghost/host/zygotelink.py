"""The supervisor's side of the zygote: spawn requests out, ``spawned`` / ``exited`` answers in.

Each request carries a token; the answer names it, and from then on the pid
names the process. The owner of a process (a Watcher, or the meta-resource's
handle) hears ``spawned(pid)``, ``spawn_failed(error)`` and ``exited(status)``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from sghost.host.loop import EventLoop
from sghost.plugins import PluginRegistry
from sghost.process import zygote
from sghost.process.spec import ChildSpec

log = logging.getLogger("sghost")
ZYGOTE_EXIT_TIMEOUT = 3.0


class ProcessOwner(Protocol):
    """Who asked for a process, and hears how it went."""

    def spawned(self, pid: int) -> None: ...
    def spawn_failed(self, error: str) -> None: ...
    def exited(self, status: int) -> None: ...


class ZygoteLink:
    """Starts the zygote, asks it for processes, and routes its answers to their owners."""

    def __init__(
        self, loop: EventLoop, on_exit: Callable[[int], None], on_lost: Callable[[], None]
    ) -> None:
        self.loop = loop
        self.on_exit = on_exit
        """Called with the pid of every process that ended, before its owner hears it."""
        self.on_lost = on_lost
        self.pid = 0
        self._sock: socket.socket | None = None
        self._tokens: dict[int, ProcessOwner] = {}
        self._pids: dict[int, ProcessOwner] = {}
        self._next_token = 0

    def start(self, registry: PluginRegistry, runners: Mapping[str, str]) -> None:
        self.pid, self._sock = zygote.start_zygote(registry, dict(runners))
        self.loop.register(self._sock, self._read)

    def spawn(self, owner: ProcessOwner, spec: ChildSpec, fds: list[int]) -> None:
        """Ask the zygote for a process; ``owner`` hears how it went."""
        assert self._sock is not None
        self._next_token += 1
        self._tokens[self._next_token] = owner
        zygote.send_packet(self._sock, {"op": "spawn", "token": self._next_token, "spec": spec}, fds)

    def _read(self) -> None:
        assert self._sock is not None
        try:
            message, fds = zygote.receive_packet(self._sock)
        except OSError:
            message, fds = None, []
        for fd in fds:
            os.close(fd)
        if message is None:
            self._lost()
            return
        op = message["op"]
        if op == "spawned":
            owner = self._tokens.pop(message["token"])
            self._pids[message["pid"]] = owner
            owner.spawned(message["pid"])
        elif op == "spawn_failed":
            self._tokens.pop(message["token"]).spawn_failed(message["error"])
        elif op == "exited":
            ended = self._pids.pop(message["pid"], None)
            self.on_exit(message["pid"])
            if ended is not None:
                ended.exited(message["status"])

    def _lost(self) -> None:
        log.error("the zygote (pid %d) is gone; its resources died with it: sghost exits", self.pid)
        if self._sock is not None:
            self.loop.unregister(self._sock)
        self.on_lost()

    def close(self) -> None:
        """Close the socket (the zygote then stops its children) and wait for the zygote to end."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.pid:
            _wait_for_exit(self.pid, ZYGOTE_EXIT_TIMEOUT)


def _wait_for_exit(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        finished, _status = os.waitpid(pid, os.WNOHANG)
        if finished:
            return
        time.sleep(0.01)  # the zygote is stopping its children; it has no pipe to wait on
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
