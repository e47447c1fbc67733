"""The local control channel: a Unix socket that serves ``sghost status|start|stop|restart|reload|rebirth|logs``.

It works without MQTT: only the user that runs sghost (and root) may connect,
since the socket is mode 0600 inside a 0700 runtime directory named after the
manifest, and the server also checks the peer's uid.

Protocol: one connection per request; the client sends one JSON object on one
line, the server answers one JSON object on one line and closes.

- ``{"op": "status"}`` -> ``{"ok": true, "status": <Supervisor.status()>}``
- ``{"op": "start"|"stop"|"restart", "resource": NAME or "all"}`` -> ``{"ok": bool, "message": str}``
- ``{"op": "reload"}`` -> ``{"ok": bool, "message": str}``
- ``{"op": "rebirth", "resource": NAME or "all"}`` -> ``{"ok": bool, "message": str}``
- ``{"op": "logs", "resource": NAME or null, "lines": N, "follow": bool}`` ->
  ``{"ok": true, "lines": [{"resource", "stream", "text", "at"}, ...]}``; with
  ``follow`` the connection stays open and each new line follows as one such
  JSON object per line, until the client closes it or the host stops.
- ``{"op": "events"}`` -> ``{"ok": true}``; the connection stays open and each
  change of the host follows as one JSON object per line
  (:mod:`sghost.host.eventfollowers`), until the client closes it or the host stops.

An answer with ``"ok": false`` carries ``"error"`` and ``"message"`` (the same text).

A lock file next to the socket (``control.lock``, holding the pid and manifest
of its owner) is held with ``flock`` for as long as the server is open, so
two sghost processes for one manifest cannot both serve it, and a socket file
left behind by a killed sghost is recognised as stale and replaced.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import stat
import struct
import weakref
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from sghost.process.controlwire import ControlError, encode_message, read_line

log = logging.getLogger("sghost.control")

SOCKET_NAME = "control.sock"
LOCK_NAME = "control.lock"
REQUEST_TIMEOUT = 1.0
"""Seconds the server waits for a client's request line (and to send the answer)."""
MAX_SOCKET_PATH = 107
"""sun_path holds 108 bytes on Linux, including the terminating NUL."""
MAX_STEM = 32
OPS = ("status", "start", "stop", "restart", "reload", "rebirth", "logs", "events", "rollback")
FOLLOW = "_follow"
"""A handler's answer may carry, under this key, ``callable(connection)`` that keeps the connection."""
MAX_LOG_LINES = 100_000

Handler = Callable[[dict[str, Any]], dict[str, Any]]


# ---------------------------------------------------------------------------
# Where the socket lives


def absolute_manifest(manifest_path: str | Path) -> Path:
    """The manifest's absolute path, as ``sghost.config.load_manifest`` spells it."""
    return Path(os.path.abspath(Path(manifest_path).expanduser()))


def _leaf(manifest_path: str | Path) -> str:
    """``<stem>-<8 hex of crc32(absolute path)>``: one directory name per manifest.

    crc32, not sha256: hashlib would load OpenSSL (about 3.7 MiB) into the supervisor.
    """
    absolute = absolute_manifest(manifest_path)
    digest = f"{zlib.crc32(os.fsencode(absolute)):08x}"
    stem = absolute.stem[:MAX_STEM] or "manifest"
    return f"{stem}-{digest}"


def _run_base() -> Path:
    return Path("/run/sghost")


def _tmp_base() -> Path:
    return Path("/tmp") / f"sghost-{os.getuid()}"


def _usable_run_base() -> bool:
    """Whether ``/run/sghost`` is ours to use.

    As root when ``/run`` is writable; as another user when ``/run/sghost``
    already exists, is owned by that user and writable (e.g. systemd's
    ``RuntimeDirectory=sghost`` for a service ``User=``).
    """
    base = _run_base()
    if os.geteuid() == 0:
        return os.access("/run", os.W_OK) or (base.is_dir() and os.access(base, os.W_OK))
    try:
        info = base.stat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and os.access(base, os.W_OK)


def default_bases() -> list[Path]:
    """The directories that may hold per-manifest runtime directories, preferred first.

    ``$XDG_RUNTIME_DIR/sghost`` when that variable is set, ``/run/sghost``, and
    ``/tmp/sghost-<uid>``. A client looks in all of them, since the user who
    asks (e.g. via ``sudo``) may not have the environment of the one who runs sghost.
    """
    bases = []
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        bases.append(Path(xdg) / "sghost")
    bases.append(_run_base())
    bases.append(_tmp_base())
    return bases


def _preferred_base() -> Path:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "sghost"
    if _usable_run_base():
        return _run_base()
    return _tmp_base()


def _make_private_dir(path: Path, mode: int = 0o700) -> None:
    """Create ``path`` (and missing parents) and make sure nobody else controls it.

    An existing directory must be owned by us; group and others lose all access.
    This matters in ``/tmp``, where anybody may create ``sghost-<uid>`` first.
    """
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        info = os.lstat(path)
    except OSError as error:
        raise ControlError(f"cannot create the runtime directory {path}: {error.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ControlError(f"{path} is not a directory; expected sghost's runtime directory")
    if info.st_uid != os.geteuid():
        raise ControlError(
            f"{path} is owned by uid {info.st_uid}, not by this user (uid {os.geteuid()}); "
            "remove it or set [host] runtime_dir"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        try:
            os.chmod(path, stat.S_IMODE(info.st_mode) & ~0o077)
        except OSError as error:
            raise ControlError(f"cannot restrict {path} to its owner: {error.strerror}") from None


def runtime_dir_for(manifest_path: str | Path, configured: Path | None = None, create: bool = True) -> Path:
    """The runtime directory (control socket and lock) of the host that runs ``manifest_path``.

    ``configured`` (``[host] runtime_dir``) if given; else
    ``$XDG_RUNTIME_DIR/sghost/<stem>-<hash>`` when ``XDG_RUNTIME_DIR`` is set, else
    ``/run/sghost/<stem>-<hash>`` when running as root and ``/run`` is writable,
    else ``/tmp/sghost-<uid>/<stem>-<hash>``; ``<hash>`` is 8 hex digits of the
    SHA-256 of the manifest's absolute path.

    :param create: create the directory (mode 0700; a configured directory keeps
        its mode when it exists already) and raise ControlError if that fails.
    """
    if configured is not None:
        directory = Path(configured)
        if create:
            try:
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as error:
                raise ControlError(f"cannot create the runtime directory {directory}: {error.strerror}") from None
        return directory
    base = _preferred_base()
    directory = base / _leaf(manifest_path)
    if create:
        if base == _tmp_base():
            _make_private_dir(base)
        else:
            try:
                base.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as error:
                raise ControlError(f"cannot create the runtime directory {base}: {error.strerror}") from None
        _make_private_dir(directory)
    return directory


def socket_path_for(manifest_path: str | Path, configured: Path | None = None, create: bool = True) -> Path:
    """The control socket of the host that runs ``manifest_path``: its runtime directory / ``control.sock``."""
    return runtime_dir_for(manifest_path, configured, create) / SOCKET_NAME


def candidate_socket_paths(manifest_path: str | Path, configured: Path | None = None) -> list[Path]:
    """Where a client looks for the control socket, preferred first (nothing is created)."""
    if configured is not None:
        return [Path(configured) / SOCKET_NAME]
    leaf = _leaf(manifest_path)
    preferred = _preferred_base() / leaf / SOCKET_NAME
    others = [base / leaf / SOCKET_NAME for base in default_bases()]
    return [preferred, *[path for path in others if path != preferred]]


# ---------------------------------------------------------------------------
# Server


def _error(text: str) -> dict[str, Any]:
    return {"ok": False, "error": text, "message": text}


_OPEN_SERVERS: weakref.WeakSet[ControlServer] = weakref.WeakSet()


def _close_in_child() -> None:
    """After ``os.fork()``: the child (the zygote, resources) must not hold the socket or the lock.

    Otherwise a killed supervisor's children would keep the lock (a new sghost
    could not start) and accept connections nobody answers.
    """
    for server in list(_OPEN_SERVERS):
        server._forget()


os.register_at_fork(after_in_child=_close_in_child)


class ControlServer:
    """The supervisor's end of the control channel, driven by its selector loop.

    Processes forked while it is open close their copies of its socket and lock
    (``os.register_at_fork``), so only the process that opened it serves it.

    :param path: the socket's path (see :func:`socket_path_for`).
    :param handler: called with each valid request (a dict with a string ``op``);
        returns the answer, a JSON-serialisable dict. It runs in the caller of
        :meth:`handle_ready`, i.e. the supervisor's loop: no locking needed.
    :param manifest: named in the lock file, so a second sghost for the same
        manifest can say which one already runs.
    """

    def __init__(self, path: Path, handler: Handler, manifest: str | Path | None = None) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(LOCK_NAME)
        self.handler = handler
        self.manifest = str(manifest) if manifest is not None else str(self.path.parent)
        self._sock: socket.socket | None = None
        self._lock_fd = -1

    # -- lifecycle

    def open(self) -> None:
        """Take the lock, replace a stale socket file, bind (mode 0600) and listen, non-blocking.

        Raises ControlError when another live sghost serves this path, or the
        socket cannot be created.
        """
        if self._sock is not None:
            return
        if len(os.fsencode(self.path)) > MAX_SOCKET_PATH:
            raise ControlError(
                f"control socket path too long ({len(os.fsencode(self.path))} bytes, the limit is "
                f"{MAX_SOCKET_PATH}): {self.path}; set [host] runtime_dir to a shorter directory"
            )
        self._take_lock()
        try:
            self._remove_stale()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                # umask so the socket is never reachable by others, not even between bind and chmod
                old_umask = os.umask(0o177)
                try:
                    sock.bind(os.fsencode(self.path))
                finally:
                    os.umask(old_umask)
                os.chmod(self.path, 0o600)
                sock.listen(16)
                sock.setblocking(False)
            except OSError as error:
                sock.close()
                raise ControlError(f"cannot open the control socket {self.path}: {error.strerror}") from None
        except BaseException:
            self._release_lock()
            raise
        self._sock = sock
        _OPEN_SERVERS.add(self)
        log.debug("control socket %s", self.path)

    def fileno(self) -> int:
        """The listening socket's descriptor, for ``selector.register(server, EVENT_READ, ...)``."""
        if self._sock is None:
            raise ControlError("the control server is not open")
        return self._sock.fileno()

    def close(self) -> None:
        """Stop serving: remove the socket file, then release the lock. Safe to call twice."""
        _OPEN_SERVERS.discard(self)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._release_lock()

    def _forget(self) -> None:
        """Close this process's copies of the socket and lock, leaving the file and the lock to the parent."""
        _OPEN_SERVERS.discard(self)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # the parent's descriptor keeps the flock
            self._lock_fd = -1

    def __enter__(self) -> ControlServer:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take_lock(self) -> None:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise ControlError(f"cannot create the lock file {self.lock_path}: {error.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            owner = os.read(fd, 4096).decode("utf-8", errors="replace").splitlines()
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise ControlError(f"cannot lock {self.lock_path}: {error.strerror}") from None
            pid = owner[0] if owner else "unknown"
            manifest = owner[1] if len(owner) > 1 else self.manifest
            raise ControlError(f"another sghost already runs for {manifest} (pid {pid})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{self.manifest}\n".encode(), 0)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd >= 0:
            # the file stays: unlinking it would let a racing sghost lock a different inode
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _remove_stale(self) -> None:
        """Remove a socket file nobody serves (we hold the lock, so its owner is gone)."""
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode):
            raise ControlError(f"{self.path} exists and is not a socket; remove it")
        if _answers(self.path):
            # an sghost that does not lock (or holds its lock through another path): leave it alone
            raise ControlError(f"another sghost already answers on {self.path}")
        log.info("removing stale control socket %s", self.path)
        self.path.unlink()

    # -- serving

    def handle_ready(self) -> None:
        """Serve one connection: call when the listening socket is readable. Never raises.

        Reads one JSON line (waiting at most REQUEST_TIMEOUT), answers one JSON
        line and closes the connection.
        """
        if self._sock is None:
            return
        try:
            conn, _address = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            log.warning("control socket: accept failed: %s", error)
            return
        with conn:
            try:
                conn.setblocking(True)
                conn.settimeout(REQUEST_TIMEOUT)
                response = self._respond(conn)
                follow = response.pop(FOLLOW, None)
                conn.sendall(encode_message(response))
                if follow is not None:
                    follow(conn.dup())  # this connection is closed; the duplicate stays open
            except Exception as error:  # a slow or vanished client must not stop the supervisor
                log.debug("control socket: client dropped: %s", error)

    def _respond(self, conn: socket.socket) -> dict[str, Any]:
        uid = _peer_uid(conn)
        if uid is not None and uid not in (0, os.geteuid()):
            return _error(f"uid {uid} may not control this sghost")
        try:
            line = read_line(conn)
        except TimeoutError:
            return _error(f"no request within {REQUEST_TIMEOUT} s")
        except ValueError as error:
            return _error(str(error))
        try:
            request = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            return _error(f"bad request: not a JSON line ({error})")
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            return _error('bad request: expected a JSON object with an "op" string')
        try:
            response = self.handler(request)
        except Exception as error:
            log.exception("control request %r failed", request)
            return _error(f"internal error: {type(error).__name__}: {error}")
        if not isinstance(response, dict):
            return _error(f"internal error: the handler answered {type(response).__name__}, not a dict")
        return response


def _peer_uid(conn: socket.socket) -> int | None:
    """The connecting process's uid (SO_PEERCRED), or None where unsupported."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    try:
        data = conn.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", data)
    return int(uid)


def _answers(path: Path) -> bool:
    """Whether something accepts connections on the Unix socket ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(os.fsencode(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


class Controllable(Protocol):
    """What :func:`make_handler` needs of the supervisor: one method per op of the protocol."""

    def status(self) -> dict[str, Any]:
        """``status``: the health snapshot, with each resource's last stderr line."""
        ...

    def command(self, op: str, name: str) -> tuple[bool, str]:
        """``start``, ``stop``, ``restart``, ``rebirth`` of one resource or ``all``."""
        ...

    def reload(self) -> tuple[bool, str]:
        """``reload``: apply the manifest as it is now."""
        ...

    def logs(self, resource: str | None, count: int, follow: bool = False) -> tuple[bool, str, list[dict[str, Any]]]:
        """``logs``: success, the refusal's text, and the last ``count`` lines as dicts."""
        ...

    def follow_logs(self, sock: socket.socket, resource: str | None) -> bool:
        """``logs`` with ``follow``: keep ``sock`` and send it every new line; False when refused."""
        ...

    def follow_events(self, sock: socket.socket) -> bool:
        """``events``: keep ``sock`` and send it every host event as a JSON line; False when refused."""
        ...

    def rollback(self, generation: int | None) -> tuple[bool, str]:
        """``rollback``: switch to an earlier generation (None: the previous one), applied and verified."""
        ...


def make_handler(target: Controllable) -> Handler:
    """The request handler that maps the protocol's ops onto the supervisor's methods.

    ``status`` -> ``status()``; ``start|stop|restart|rebirth`` ->
    ``command(op, resource)``; ``logs`` -> ``logs(resource, lines)`` and, with
    ``follow``, ``follow_logs(connection, resource)``; ``events`` -> ``follow_events(connection)``;
    ``reload`` -> ``reload()``; ``rollback`` -> ``rollback(generation)``; anything else is answered with an error.
    """

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "status":
            return {"ok": True, "status": target.status()}
        if op == "logs":
            return _logs(target, request)
        if op == "events":
            return _events(target)
        if op in ("start", "stop", "restart", "rebirth"):
            resource = request.get("resource")
            if not isinstance(resource, str) or not resource:
                return _error(f'{op}: expected "resource": a resource name or "all"')
            ok, message = target.command(op, resource)
        elif op == "reload":
            ok, message = target.reload()
        elif op == "rollback":
            generation = request.get("generation")
            if generation is not None and (not isinstance(generation, int) or isinstance(generation, bool)):
                return _error('rollback: expected "generation": a generation number, or null for the previous one')
            ok, message = target.rollback(generation)
        else:
            return _error(f"unknown op {op!r}; expected one of {', '.join(OPS)}")
        return {"ok": ok, "message": message} if ok else _error(message)

    return handle


def _events(target: Controllable) -> dict[str, Any]:
    def keep(conn: socket.socket) -> None:
        if not target.follow_events(conn):
            conn.close()

    return {"ok": True, FOLLOW: keep}


def _logs(target: Controllable, request: dict[str, Any]) -> dict[str, Any]:
    resource, count, follow = request.get("resource"), request.get("lines", 50), request.get("follow", False)
    if resource is not None and (not isinstance(resource, str) or not resource):
        return _error('logs: expected "resource": a resource name, or null for every resource')
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_LOG_LINES:
        return _error(f'logs: expected "lines": a whole number from 0 to {MAX_LOG_LINES}')
    ok, message, lines = target.logs(resource, count, bool(follow))
    if not ok:
        return _error(message)
    answer: dict[str, Any] = {"ok": True, "lines": lines}
    if follow:
        def keep(conn: socket.socket) -> None:
            if not target.follow_logs(conn, resource):
                conn.close()

        answer[FOLLOW] = keep
    return answer


__all__ = [
    "OPS",
    "ControlError",
    "ControlServer",
    "Controllable",
    "absolute_manifest",
    "candidate_socket_paths",
    "encode_message",
    "make_handler",
    "read_line",
    "runtime_dir_for",
    "socket_path_for",
]
