"""Repeated warnings, at most one line per key and period, with the count of those left out."""

from __future__ import annotations

import logging
import time


class RateLimitedLog:
    """``warning(key, text, *args)`` logs at most once per ``period`` seconds for each ``key``.

    The next line logged for a key says how many were suppressed since the last one,
    so nothing is dropped silently.
    """

    def __init__(self, logger: logging.Logger, period: float = 10.0) -> None:
        self.logger = logger
        self.period = period
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, text: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next.get(key, 0.0):
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._next[key] = now + self.period
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            text += f" (and {suppressed} more like it in the last {self.period:g} s)"
        self.logger.warning(text, *args)
