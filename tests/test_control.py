"""The local control channel over real Unix sockets, and the status table.

The server runs in a thread with its own selector, as the supervisor's loop
drives it; clients are this process (``request``) or ``sghost`` subprocesses.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sghost.cli.client import request
from sghost.cli.statusview import format_duration, format_status
from sghost.host import control
from sghost.host.control import ControlError, ControlServer, make_handler, runtime_dir_for, socket_path_for

SNAPSHOT: dict[str, Any] = {
    "host": "gw1",
    "version": "0.1.0",
    "pid": 4242,
    "manifest": "/etc/sghost/hostconfig.toml",
    "uptime": 11_520,
    "cpu": 1.5,
    "memory": 40.2,
    "memory_available_mb": 2048,
    "broker_connected": True,
    "resources": {
        "taxisign": {
            "state": "running", "restarts": 2, "pid": 4300, "uptime": 45, "cpu": 0.3,
            "memory": 21.44, "error": "exit code 1", "connected": True, "dropped": 1204, "refused": 3,
        },
        "climate": {
            "state": "fatal", "restarts": 5, "pid": None, "uptime": 0, "cpu": 0.0,
            "memory": 0.0, "error": "plugin error: ValueError: bad\nsecond line", "connected": False,
        },
    },
}


class FakeHost:
    """Stands in for the supervisor behind :func:`make_handler`; records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.reload_ok = True

    def status(self) -> dict[str, Any]:
        self.calls.append(("status",))
        return SNAPSHOT

    def command(self, op: str, name: str) -> tuple[bool, str]:
        self.calls.append((op, name))
        if name != "all" and name not in SNAPSHOT["resources"]:
            return False, f"unknown resource {name!r}"
        return True, f"{op}: {name}"

    def reload(self) -> tuple[bool, str]:
        self.calls.append(("reload",))
        if self.reload_ok:
            return True, "reloaded: 0 added, 0 removed, 0 restarted, 2 untouched"
        return False, "reload rejected, nothing changed:\nhostconfig.toml: resources.x.type: missing"

    def logs(self, resource: str | None, count: int, follow: bool = False) -> tuple[bool, str, list[dict[str, Any]]]:
        self.calls.append(("logs", str(resource)))
        return True, "", []

    def follow_logs(self, sock: socket.socket, resource: str | None) -> bool:
        return False


class ServerThread:
    """Drives a ControlServer from a selector in a thread, like the supervisor's loop."""

    def __init__(self, server: ControlServer) -> None:
        self.server = server
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.server, selectors.EVENT_READ, "control")
            selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            while True:
                for key, _mask in selector.select():
                    if key.data == "wake":
                        return
                    self.server.handle_ready()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._wake_w.send(b"x")
        self._thread.join(5)
        self._wake_r.close()
        self._wake_w.close()
        self.server.close()


@pytest.fixture
def xdg(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short private XDG_RUNTIME_DIR (socket paths must stay under 108 bytes)."""
    directory = Path(tempfile.mkdtemp(prefix="sgx-"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(directory))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "hostconfig.toml"
    path.write_text('[host]\nname = "gw1"\n')
    return path


@pytest.fixture
def host() -> FakeHost:
    return FakeHost()


def open_server(manifest: Path, host: FakeHost) -> ControlServer:
    server = ControlServer(socket_path_for(manifest), make_handler(host), manifest=manifest)
    server.open()
    return server


def raw_exchange(path: Path, data: bytes) -> dict[str, Any]:
    """Send bytes as they are, return the server's one-line answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(data)
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return json.loads(answer)


def run_sghost(*args: str, env_dir: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, XDG_RUNTIME_DIR=str(env_dir))
    return subprocess.run(
        [sys.executable, "-m", "sghost", *args], capture_output=True, text=True, env=env, timeout=timeout,
    )


# ---------------------------------------------------------------------------
# Where the socket lives


def test_runtime_dir_is_named_after_the_manifest_and_private(xdg: Path, manifest: Path) -> None:
    directory = runtime_dir_for(manifest)
    assert directory.parent == xdg / "sghost"
    assert directory.name.startswith("hostconfig-")
    assert len(directory.name) == len("hostconfig-") + 8
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert socket_path_for(manifest) == directory / "control.sock"
    # the same manifest spelled relatively maps to the same directory; another manifest does not
    relative = os.path.relpath(manifest)
    assert runtime_dir_for(relative) == directory
    other = manifest.with_name("other.toml")
    assert runtime_dir_for(other) != directory


def test_configured_runtime_dir_wins(xdg: Path, manifest: Path, tmp_path: Path) -> None:
    configured = tmp_path / "run"
    assert runtime_dir_for(manifest, configured) == configured
    assert configured.is_dir()


def test_tmp_fallback_refuses_a_directory_someone_else_owns(
    monkeypatch: pytest.MonkeyPatch, manifest: Path, tmp_path: Path
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(control, "_usable_run_base", lambda: False)
    base = tmp_path / "sghost-tmp"
    monkeypatch.setattr(control, "_tmp_base", lambda: base)
    directory = runtime_dir_for(manifest)
    assert directory.parent == base
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
    if os.geteuid() != 0:
        pytest.skip("needs root to create a directory owned by someone else")
    shutil.rmtree(base)
    base.mkdir(mode=0o777)
    os.chown(base, 12345, 12345)
    with pytest.raises(ControlError, match=r"owned by uid 12345, not by this user"):
        runtime_dir_for(manifest)


# ---------------------------------------------------------------------------
# Server and client


def test_round_trip_status_and_commands(xdg: Path, manifest: Path, host: FakeHost) -> None:
    with ServerThread(open_server(manifest, host)):
        answer = request(manifest, {"op": "status"})
        assert answer == {"ok": True, "status": SNAPSHOT}
        assert request(manifest, {"op": "restart", "resource": "taxisign"}) == {
            "ok": True, "message": "restart: taxisign",
        }
        refused = request(manifest, {"op": "stop", "resource": "nope"})
        assert refused["ok"] is False
        assert refused["message"] == refused["error"] == "unknown resource 'nope'"
        assert request(manifest, {"op": "reload"})["ok"] is True
        unknown = request(manifest, {"op": "explode"})
        assert unknown["ok"] is False
        assert "unknown op 'explode'" in unknown["error"]
        missing = request(manifest, {"op": "start"})
        assert missing["ok"] is False
        assert '"resource"' in missing["error"]
    assert host.calls == [("status",), ("restart", "taxisign"), ("stop", "nope"), ("reload",)]


def test_socket_is_owner_only_and_removed_on_close(xdg: Path, manifest: Path, host: FakeHost) -> None:
    server = open_server(manifest, host)
    try:
        info = os.stat(server.path)
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o600
        assert stat.S_IMODE(os.stat(server.path.parent).st_mode) == 0o700
    finally:
        server.close()
    assert not server.path.exists()
    server.close()  # twice is harmless


def test_stale_socket_is_replaced(xdg: Path, manifest: Path, host: FakeHost) -> None:
    path = socket_path_for(manifest)
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(path))
    leftover.close()  # like a killed sghost: the file stays, nobody listens
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    with pytest.raises(ControlError, match=r"no sghost is running for .* \(stale control socket at "):
        request(manifest, {"op": "status"})
    with ServerThread(open_server(manifest, host)):
        assert request(manifest, {"op": "status"})["ok"] is True


def test_second_server_for_the_same_manifest_is_refused(xdg: Path, manifest: Path, host: FakeHost) -> None:
    with ServerThread(open_server(manifest, host)) as first:
        second = ControlServer(first.server.path, make_handler(FakeHost()), manifest=manifest)
        with pytest.raises(ControlError) as refused:
            second.open()
        assert str(refused.value) == f"another sghost already runs for {manifest} (pid {os.getpid()})"
        # the first one still serves, and its socket was not touched
        assert request(manifest, {"op": "status"})["status"]["host"] == "gw1"
    # once the first is closed, a new one may serve
    third = open_server(manifest, host)
    third.close()


def test_forked_children_do_not_keep_the_socket_or_the_lock(xdg: Path, manifest: Path, host: FakeHost) -> None:
    server = open_server(manifest, host)
    listening, lock = server.fileno(), server._lock_fd
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports which of the two descriptors it still has
        try:
            still_open = []
            for fd in (listening, lock):
                try:
                    os.fstat(fd)
                    still_open.append(fd)
                except OSError:
                    pass
            os.write(write_end, json.dumps(still_open).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as report:
        assert json.loads(report.read()) == []
    os.waitpid(pid, 0)
    try:
        # the parent still serves and still holds the lock
        with ServerThread(server):
            assert request(manifest, {"op": "status"})["ok"] is True
            with pytest.raises(ControlError, match="another sghost already runs"):
                ControlServer(server.path, make_handler(host), manifest=manifest).open()
    finally:
        server.close()


def test_a_regular_file_in_place_of_the_socket_is_not_removed(xdg: Path, manifest: Path, host: FakeHost) -> None:
    path = socket_path_for(manifest)
    path.write_text("not a socket")
    with pytest.raises(ControlError, match="exists and is not a socket"):
        open_server(manifest, host)
    assert path.read_text() == "not a socket"


def test_bad_requests_are_answered_with_an_error(xdg: Path, manifest: Path, host: FakeHost) -> None:
    with ServerThread(open_server(manifest, host)) as running:
        path = running.server.path
        bad = raw_exchange(path, b"this is not json\n")
        assert bad["ok"] is False
        assert bad["error"].startswith("bad request: not a JSON line")
        not_object = raw_exchange(path, b"[1, 2]\n")
        assert not_object["ok"] is False
        assert '"op"' in not_object["error"]
        binary = raw_exchange(path, b"\xff\xfe\n")
        assert binary["ok"] is False
        # the server still works after all that
        assert request(manifest, {"op": "status"})["ok"] is True
    assert host.calls == [("status",)]


def test_handler_failure_is_an_error_answer(xdg: Path, manifest: Path) -> None:
    def broken(request: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom")

    server = ControlServer(socket_path_for(manifest), broken, manifest=manifest)
    server.open()
    with ServerThread(server):
        answer = request(manifest, {"op": "status"})
    assert answer == {"ok": False, "error": "internal error: RuntimeError: boom",
                      "message": "internal error: RuntimeError: boom"}


def test_a_silent_client_is_told_and_the_server_answers_the_next(xdg: Path, manifest: Path, host: FakeHost) -> None:
    with ServerThread(open_server(manifest, host)) as running:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
            silent.connect(str(running.server.path))
            silent.settimeout(5 + control.REQUEST_TIMEOUT)
            answer = json.loads(silent.recv(4096))  # the server gives up on the missing line and says so
        assert answer["ok"] is False
        assert answer["error"] == f"no request within {control.REQUEST_TIMEOUT} s"
        assert request(manifest, {"op": "status"}) == {"ok": True, "status": SNAPSHOT}


def test_handle_ready_with_no_client_waiting_returns_without_raising(
    xdg: Path, manifest: Path, host: FakeHost
) -> None:
    server = open_server(manifest, host)
    try:
        server.handle_ready()  # a wake-up with nothing to accept (another thread took it, say)
    finally:
        server.close()


def test_request_without_a_running_host(xdg: Path, manifest: Path) -> None:
    with pytest.raises(ControlError) as missing:
        request(manifest, {"op": "status"})
    expected = socket_path_for(manifest, create=False)
    assert str(missing.value) == f"no sghost is running for {manifest} (no control socket at {expected})"


def test_request_follows_the_manifests_runtime_dir(xdg: Path, tmp_path: Path, host: FakeHost) -> None:
    manifest = tmp_path / "gw.toml"
    manifest.write_text('[host]\nname = "gw1"\nruntime_dir = "run"\n')
    server = ControlServer(socket_path_for(manifest, tmp_path / "run"), make_handler(host), manifest=manifest)
    server.open()
    assert server.path == tmp_path / "run" / "control.sock"
    with ServerThread(server):
        assert request(manifest, {"op": "status"})["ok"] is True


def test_socket_path_too_long_is_explained(tmp_path: Path, host: FakeHost) -> None:
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    with pytest.raises(ControlError, match="control socket path too long"):
        ControlServer(deep / "control.sock", make_handler(host)).open()


# ---------------------------------------------------------------------------
# The command line


def test_cli_status_when_nothing_runs(xdg: Path, manifest: Path) -> None:
    result = run_sghost("status", "-c", str(manifest), env_dir=xdg)
    assert result.returncode == 1
    expected = socket_path_for(manifest, create=False)
    assert f"no sghost is running for {manifest} (no control socket at {expected})" in result.stderr
    assert result.stdout == ""
    stop = run_sghost("stop", "taxisign", "-c", str(manifest), env_dir=xdg)
    assert stop.returncode == 1
    assert "no sghost is running for" in stop.stderr


def test_cli_against_a_running_host(xdg: Path, manifest: Path, host: FakeHost) -> None:
    with ServerThread(open_server(manifest, host)):
        table = run_sghost("status", "-c", str(manifest), env_dir=xdg)
        assert table.returncode == 0, table.stderr
        assert "host gw1" in table.stdout
        assert "RESOURCE" in table.stdout
        assert "taxisign" in table.stdout
        as_json = run_sghost("status", "--json", "-c", str(manifest), env_dir=xdg)
        assert as_json.returncode == 0, as_json.stderr
        assert json.loads(as_json.stdout) == SNAPSHOT
        restart = run_sghost("restart", "taxisign", "-c", str(manifest), env_dir=xdg)
        assert (restart.returncode, restart.stdout.strip()) == (0, "restart: taxisign")
        stop_all = run_sghost("stop", "all", "-c", str(manifest), env_dir=xdg)
        assert (stop_all.returncode, stop_all.stdout.strip()) == (0, "stop: all")
        unknown = run_sghost("start", "nope", "-c", str(manifest), env_dir=xdg)
        assert unknown.returncode == 1
        assert "unknown resource 'nope'" in unknown.stderr
        host.reload_ok = False
        rejected = run_sghost("reload", "-c", str(manifest), env_dir=xdg)
        assert rejected.returncode == 1
        assert "reload rejected, nothing changed" in rejected.stderr
        assert "resources.x.type: missing" in rejected.stderr
        host.reload_ok = True
        reloaded = run_sghost("reload", "-c", str(manifest), env_dir=xdg)
        assert reloaded.returncode == 0
        assert "2 untouched" in reloaded.stdout
    assert ("restart", "taxisign") in host.calls
    assert ("stop", "all") in host.calls
    assert ("start", "nope") in host.calls


# ---------------------------------------------------------------------------
# The status table


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (45, "45s"), (60, "1m00s"), (725, "12m05s"), (11_520, "3h12m"), (183_600, "2d03h"), (None, "-")],
)
def test_format_duration(seconds: float | None, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_format_status() -> None:
    text = format_status(SNAPSHOT)
    lines = text.splitlines()
    assert lines[0] == "host gw1  pid 4242  sghost 0.1.0  up 3h12m  broker connected: yes"
    assert lines[1] == "manifest /etc/sghost/hostconfig.toml"
    header = next(line for line in lines if line.startswith("RESOURCE"))
    assert header.split() == [
        "RESOURCE", "STATE", "PID", "RESTARTS", "UPTIME", "CPU", "MEMORY", "DROPPED", "REFUSED", "LAST", "ERROR"
    ]
    taxisign = next(line for line in lines if line.startswith("taxisign"))
    assert taxisign.split() == [
        "taxisign", "running", "4300", "2", "45s", "0.3%", "21.4", "MiB", "1,204", "3", "exit", "code", "1"
    ]
    climate = next(line for line in lines if line.startswith("climate"))
    # no process: no pid, uptime, CPU or memory; the error on one line
    assert climate.split()[:7] == ["climate", "fatal", "-", "5", "-", "-", "-"]
    assert climate.endswith("plugin error: ValueError: bad second line")
    # columns line up: every row's STATE starts where the header's does
    column = header.index("STATE")
    assert taxisign[column:].startswith("running")
    assert climate[column:].startswith("fatal")


def test_format_status_broker_down_and_no_resources() -> None:
    text = format_status({**SNAPSHOT, "broker_connected": False, "resources": {}})
    assert "broker connected: no" in text
    assert "(no resources)" in text
