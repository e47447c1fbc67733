"""Runs a real ``sghost start`` process against a test broker, and watches its log."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from sghost.host.broker import MosquittoBroker
from sghost.testing import Recorder

PLUGIN_DIR = Path(__file__).parent / "plugins"


def manifest_text(
    broker: MosquittoBroker | None,
    resources: str,
    host: str = "sghost",
    port: int | None = None,
    defaults: str = "",
    host_extra: str = "",
    broker_extra: str = "",
) -> str:
    """A manifest for the test broker; ``resources`` holds the ``[resources.*]`` tables."""
    broker_port = port if port is not None else broker.port if broker else 1
    return (
        f'[host]\nname = "{host}"\nhealth_interval = 1.0\n{host_extra}\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {broker_port}\n{broker_extra}\n'
        f"[defaults]\nbackoff_initial = 0.2\nbackoff_max = 1.0\nstop_timeout = 3.0\n{defaults}\n"
        f"{resources}\n"
    )


def resource_pid(recorder: Recorder, host: str, resource: str, other_than: int | None = None,
                 timeout: float = 10.0) -> int:
    """The pid the host's health shows for ``resource``, once it shows a real one (not 0, not ``other_than``)."""
    topic = f"data/{host}/{resource}_pid"

    def current() -> int | None:
        value = recorder.latest(topic) or ""
        pid = int(value) if value.isdigit() else 0
        return pid if pid > 0 and pid != other_than else None

    pid = recorder.wait_until(current, timeout)
    assert pid, f"no pid (other than {other_than}) on {topic}; seen: {[m.payload for m in recorder.on(topic)]}"
    return int(pid)  # type: ignore[call-overload]


def sghost_env(extra_plugins: str = "sghost_test_plugins") -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGIN_DIR), env.get("PYTHONPATH", "")]))
    env["SGHOST_PLUGINS"] = extra_plugins
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sghost", *args],
        capture_output=True,
        text=True,
        env=env or sghost_env(),
        timeout=timeout,
    )


class HostProcess:
    """``sghost start -c <manifest>`` as a child process whose log lines are collected."""

    def __init__(self, manifest: Path, env: dict[str, str] | None = None) -> None:
        self.manifest = manifest
        self.env = env or sghost_env()
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> HostProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sghost", "start", "-c", str(self.manifest)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            start_new_session=True,  # its own process group, as under systemd or a shell
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def log(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_log(self, text: str, timeout: float = 10.0, count: int = 1) -> str:
        """Wait until ``text`` appears in ``count`` log lines; return the last such line."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines if text in line]
                if len(found) >= count:
                    return found[count - 1]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"log line {text!r} (x{count}) not seen within {timeout} s:\n{self.log()}")
                self._changed.wait(min(remaining, 0.2))

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.process is not None
        code = self.process.wait(timeout)
        if self._reader is not None:
            self._reader.join(5)
        return code

    def stop(self) -> int | None:
        """SIGTERM and wait; SIGKILL the whole tree if it does not end."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        family = self.descendants()
        self.signal(signal.SIGTERM)
        try:
            return self.wait(20)
        except subprocess.TimeoutExpired:
            for process in [*family, psutil.Process(self.pid)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
            return self.wait(5)


def wait_until(condition: Callable[[], object], timeout: float = 5.0, interval: float = 0.05) -> object:
    """Poll ``condition`` (for process state, which sends no event) until truthy or timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)  # sleep-ok: polling process state, which has no event to wait on


def all_gone(pids: list[int]) -> bool:
    return not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)
