"""When to restart a resource that ended, and when to call it fatal."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

STABLE_AFTER = 2.0
"""A process that ran this long before it ended is restarted at once, without backoff."""


@dataclass(frozen=True)
class Decision:
    """What to do after a process ended."""

    restart: bool
    delay: float = 0.0
    fatal: bool = False


class RestartTracker:
    """Counts one resource's failures and turns them into backoff delays and the fatal verdict.

    Failures older than ``restart_window`` are forgotten. Failures while the
    broker is unreachable back off but are not counted (an outage must not
    make every resource fatal).
    """

    def __init__(
        self,
        restart: str,
        backoff_initial: float,
        backoff_max: float,
        max_restarts: int,
        restart_window: float,
    ) -> None:
        self.restart = restart
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.failures: deque[float] = deque()
        self.quick_failures = 0

    def decide(self, now: float, ran_for: float, exit_status: int, count_failure: bool = True) -> Decision:
        """Decide after a process that ran ``ran_for`` seconds ended with ``exit_status``."""
        failed = exit_status != 0
        if self.restart == "never" or (self.restart == "on-failure" and not failed):
            return Decision(restart=False)
        stable = ran_for >= STABLE_AFTER
        self.quick_failures = 0 if stable else self.quick_failures + 1
        if count_failure:
            self.failures.append(now)
        self._forget_before(now - self.restart_window)
        if len(self.failures) > self.max_restarts:
            return Decision(restart=True, delay=self.backoff_max, fatal=True)
        if stable:
            return Decision(restart=True)
        delay = min(self.backoff_initial * 2 ** (self.quick_failures - 1), self.backoff_max)
        return Decision(restart=True, delay=delay)

    def clear(self) -> None:
        """Forget every failure, as ``sghost restart`` does for a fatal resource."""
        self.failures.clear()
        self.quick_failures = 0

    def _forget_before(self, horizon: float) -> None:
        while self.failures and self.failures[0] < horizon:
            self.failures.popleft()
