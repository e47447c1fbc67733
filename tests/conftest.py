"""Fixtures shared by the tests that run a real ``sghost start``."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.natscluster import cluster  # noqa: F401  (the fixture, for the tests that run a nats-server cluster)

from hostharness import sghost_env
from sghost.testing import Recorder

# A shell starts a background job (`make test &`, a CI runner's script) with SIGINT
# ignored, and every process the tests start would inherit that: the examples that
# stop on Ctrl-C would never stop. The tests run as if in a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def host_env() -> dict[str, str]:
    """The hosts ``host_factory`` (from sghost.testing) starts load the test plugins of tests/plugins."""
    return sghost_env()


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
