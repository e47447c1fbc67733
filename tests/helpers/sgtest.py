"""Waiting helpers for the sgframework tests: no sleeps, only conditions with timeouts.

``retained`` (what a new subscriber finds) moved to sghost.testing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sghost.testing import wait_until


@dataclass(frozen=True)
class Call:
    obj: Any
    messagetype: str
    servicename: str
    signalname: str
    payload: str
    thread: str


class Calls:
    """A user callback that records its calls; optionally returns a value or raises."""

    def __init__(self, returns: Any = None, raises_on: str | None = None) -> None:
        self.calls: list[Call] = []
        self.returns = returns
        self.raises_on = raises_on
        self._changed = threading.Condition()

    def __call__(self, obj: Any, messagetype: str, servicename: str, signalname: str, payload: str) -> Any:
        with self._changed:
            self.calls.append(
                Call(obj, messagetype, servicename, signalname, payload, threading.current_thread().name)
            )
            self._changed.notify_all()
        if self.raises_on is not None and payload == self.raises_on:
            raise RuntimeError(f"callback refuses {payload!r}")
        return self.returns

    def payloads(self) -> list[str]:
        with self._changed:
            return [call.payload for call in self.calls]

    def wait_for(self, payload: str, timeout: float = 5.0, pump: Callable[[], object] | None = None) -> Call:
        """Wait for a call with ``payload``; ``pump`` (e.g. ``app.loop``) is called while waiting."""
        found = wait(lambda: next((c for c in list(self.calls) if c.payload == payload), None), timeout, pump,
                     self._changed)
        assert found is not None, f"no callback with {payload!r} within {timeout} s; got {self.payloads()}"
        return found


def wait(
    condition: Callable[[], Any],
    timeout: float = 5.0,
    pump: Callable[[], object] | None = None,
    changed: threading.Condition | None = None,
) -> Any:
    """:func:`sghost.testing.wait_until`, checking every 20 ms: ``pump`` drives the waiting, or ``changed`` wakes it."""
    return wait_until(condition, timeout, 0.02, pump, changed)


class LogWatch(logging.Handler):
    """Collects records of the ``sgframework`` loggers and lets a test wait for a text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._changed:
            self.records.append(record)
            self._changed.notify_all()

    def texts(self) -> list[str]:
        with self._changed:
            return [record.getMessage() for record in self.records]

    def lines(self, text: str) -> list[str]:
        """The messages so far that contain ``text``."""
        return [line for line in self.texts() if text in line]

    def wait_for(self, text: str, timeout: float = 5.0, pump: Callable[[], object] | None = None) -> str:
        found = wait(lambda: next((t for t in self.texts() if text in t), None), timeout, pump, self._changed)
        assert found is not None, f"no log containing {text!r} within {timeout} s"
        return found


@contextmanager
def log_watch() -> Iterator[LogWatch]:
    watch = LogWatch()
    logger = logging.getLogger("sgframework")
    logger.addHandler(watch)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)


class StatusCalls:
    """An ``on_broker_connectionstatus_info`` callback that records the states."""

    def __init__(self) -> None:
        self.states: list[bool] = []
        self.changed = threading.Condition()

    def __call__(self, obj: Any, connected: bool) -> None:
        with self.changed:
            self.states.append(connected)
            self.changed.notify_all()

    def wait_for_count(self, count: int, timeout: float = 10.0) -> list[bool]:
        wait(lambda: len(self.states) >= count, timeout, changed=self.changed)
        return list(self.states)


_counter = 0
_counter_lock = threading.Lock()


def short_name(prefix: str = "t") -> str:
    """A unique, short resource name (client ids stay well under 23 characters with a pid)."""
    global _counter
    with _counter_lock:
        _counter += 1
        return f"{prefix}{_counter}"
