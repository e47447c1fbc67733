"""Fixtures shared by the tests that run a real ``sghost start``."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hostharness import HostProcess
from sghost.testing import Recorder

# A shell starts a background job (`make test &`, a CI runner's script) with SIGINT
# ignored, and every process the tests start would inherit that: the examples that
# stop on Ctrl-C would never stop. The tests run as if in a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def host_factory(tmp_path: Path) -> Iterator[Callable[..., HostProcess]]:
    """``host_factory(manifest_text, name="hostconfig.toml", env=None)`` starts sghost; it is stopped after the test."""
    started: list[HostProcess] = []

    def make(text: str, name: str = "hostconfig.toml", env: dict[str, str] | None = None) -> HostProcess:
        manifest = tmp_path / name
        manifest.write_text(text)
        host = HostProcess(manifest, env).start()
        started.append(host)
        return host

    yield make
    for host in started:
        host.stop()


@pytest.fixture
def clients() -> Iterator[list[Any]]:
    """Recorders and paho clients to stop after the test."""
    started: list[Any] = []
    yield started
    for client in started:
        if isinstance(client, Recorder):
            client.stop()
        else:
            client.disconnect()
            client.loop_stop()
