"""The test suite's side of the toolkit in :mod:`sghost.testing`: the test plugins on the path, pids, processes.

``HostProcess``, ``manifest_text`` and ``wait_until`` live in :mod:`sghost.testing`
(plugin distributions use them too) and are re-exported here.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

import psutil

from sghost import testing
from sghost.testing import ChildProcess, Recorder, manifest_text, wait_until

__all__ = [
    "PLUGIN_DIR",
    "ChildProcess",
    "HostProcess",
    "all_gone",
    "manifest_text",
    "resource_pid",
    "run_cli",
    "sghost_env",
    "wait_health_documents",
    "wait_until",
]

PLUGIN_DIR = Path(__file__).parent / "plugins"


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


def wait_health_documents(recorder: Recorder, host: str, after: float, count: int = 2) -> None:
    """Wait for ``count`` health documents the host published after ``after``: a barrier on its own path.

    An answer the meta-resource gave (or a state it sent) before them has arrived before them.
    """
    topic = f"data/{host}/health"
    assert recorder.wait_until(lambda: len([m for m in recorder.on(topic) if m.at > after]) >= count, 10), (
        f"fewer than {count} health documents on {topic}"
    )


def sghost_env(extra_plugins: str = "sghost_test_plugins") -> dict[str, str]:
    """The environment for sghost processes: tests/plugins on the path, ``extra_plugins`` loaded."""
    pythonpath = os.pathsep.join(filter(None, [str(PLUGIN_DIR), os.environ.get("PYTHONPATH", "")]))
    return testing.sghost_environment(PYTHONPATH=pythonpath, SGHOST_PLUGINS=extra_plugins)


def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``python -m sghost ARGS`` with the test plugins (``env`` defaults to :func:`sghost_env`)."""
    return testing.run_sghost(*args, env=env or sghost_env(), timeout=timeout)


class HostProcess(testing.HostProcess):
    """:class:`sghost.testing.HostProcess` whose environment defaults to :func:`sghost_env`."""

    def __init__(self, manifest: Path, env: Mapping[str, str] | None = None) -> None:
        super().__init__(manifest, env or sghost_env())

    def start(self) -> HostProcess:
        super().start()
        return self


def all_gone(pids: list[int]) -> bool:
    return not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)
