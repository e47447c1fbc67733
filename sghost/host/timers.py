"""A heap of one-shot timers for the supervisor's single-threaded event loop."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any


class Timer:
    """A scheduled call; ``cancel()`` makes it a no-op."""

    __slots__ = ("callback", "cancelled", "due")

    def __init__(self, due: float, callback: Callable[[], Any]) -> None:
        self.due = due
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()

    def call_later(self, delay: float, callback: Callable[[], Any]) -> Timer:
        timer = Timer(time.monotonic() + max(0.0, delay), callback)
        heapq.heappush(self._heap, (timer.due, next(self._order), timer))
        return timer

    def next_delay(self, default: float) -> float:
        """Seconds until the next live timer is due (at most ``default``)."""
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        if not self._heap:
            return default
        return max(0.0, min(default, self._heap[0][0] - time.monotonic()))

    def run_due(self) -> None:
        now = time.monotonic()
        while self._heap and self._heap[0][0] <= now:
            _due, _order, timer = heapq.heappop(self._heap)
            if not timer.cancelled:
                timer.cancel()
                timer.callback()
