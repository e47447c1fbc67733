"""Fixtures of the canbus tests: the climate bus description, its mapping, in-process resources, a pty pair."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from canbus_helpers import CLIMATE_KCD, MAPPING, PtyPair
from sghost.context import ResourceContext
from sghost.testing import MosquittoBroker, wait_until

import sghost_canbus

_channels = itertools.count()


@pytest.fixture
def can_files(tmp_path: Path) -> Path:
    """A directory holding ``climate.kcd`` and ``mapping.json`` (the original's two files)."""
    (tmp_path / "climate.kcd").write_text(CLIMATE_KCD)
    (tmp_path / "mapping.json").write_text(json.dumps(MAPPING))
    return tmp_path


@pytest.fixture
def virtual_channel() -> str:
    """A python-can ``virtual`` channel no other test uses (virtual buses join within one process only)."""
    return f"canbus-test-{os.getpid()}-{next(_channels)}"


@pytest.fixture
def peer(virtual_channel: str) -> Iterator[Any]:
    """The test's own node on the virtual bus the resource uses."""
    import can

    bus = can.Bus(interface="virtual", channel=virtual_channel)
    yield bus
    bus.shutdown()


@pytest.fixture
def start_canbus(
    mosquitto: MosquittoBroker, can_files: Path, start_resource: Callable[..., ResourceContext]
) -> Callable[..., ResourceContext]:
    """``start_canbus(settings, name="climate")``: a canbus resource set up as sghost would, in this process."""

    def start(settings: dict[str, Any], name: str = "climate") -> ResourceContext:
        return start_resource(sghost_canbus.setup, mosquitto, settings, name, can_files)

    return start


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[PtyPair]:
    """Two linked pseudo-terminals made by ``socat``: a serial line between two processes, no network."""
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (Debian package socat)")
    ends = (str(tmp_path / "ttyA"), str(tmp_path / "ttyB"))
    process = subprocess.Popen(
        ["socat", f"pty,raw,echo=0,link={ends[0]}", f"pty,raw,echo=0,link={ends[1]}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    # socat creates the links asynchronously, with no event to wait on
    made = wait_until(lambda: all(os.path.exists(end) for end in ends) or process.poll() is not None, 5, 0.01)
    if not made or process.poll() is not None:
        raise AssertionError(f"socat did not make the pty pair: {process.stderr.read() if process.stderr else ''}")
    yield PtyPair(ends, process)
    if process.poll() is None:
        process.terminate()
        process.wait(5)
