"""Fixtures shared by the tests that run a real ``sghost start``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hostharness import HostProcess


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
