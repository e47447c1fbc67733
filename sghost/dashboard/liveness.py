"""The dashboard's sign of life: heartbeats on its events pipe while its threads turn.

The supervisor kills and restarts a dashboard process that sends no heartbeat
for ``[dashboard] watchdog`` seconds (sghost/host/dashboardprocess.py). A
heartbeat is sent only while both working threads show progress: the HTTP
server's accept loop (it turns at least every poll interval) and the hub's
sampler (it turns every sample interval, whether or not the host answers). A
process that is stopped, deadlocked or stuck in one of them therefore goes
quiet, and is replaced.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from sghost.process import events

MAX_HEARTBEAT_INTERVAL = 1.0
SLACK = 1.0
"""Seconds a thread may be late past its own period before it counts as stuck."""


class EventSender(Protocol):
    def send(self, kind: str, **fields: object) -> None: ...


class Turning:
    """A thread's progress: when it last went round, and how often it should."""

    def __init__(self, period: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = period
        self.clock = clock
        self.last = clock()

    def turned(self) -> None:
        self.last = self.clock()

    def stuck(self) -> bool:
        return self.clock() - self.last > 2 * self.period + SLACK


def heartbeat_interval(watchdog: float) -> float:
    """How often to tell the supervisor: four times within its ``watchdog``, at most once a second."""
    return min(MAX_HEARTBEAT_INTERVAL, watchdog / 4)


def beat(channel: EventSender, threads: dict[str, Turning]) -> list[str]:
    """Send a heartbeat unless a thread is stuck; return the names of the stuck ones."""
    stuck = [name for name, turning in threads.items() if turning.stuck()]
    if not stuck:
        channel.send(events.HEARTBEAT)
    return stuck
