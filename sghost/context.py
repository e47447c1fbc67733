"""What a plugin's ``setup(context)`` receives: its resource, settings and scheduling helpers."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sgframework import Resource


@dataclass(order=True)
class _Timer:
    due: float
    order: int
    interval: float = field(compare=False)
    function: Callable[[], Any] = field(compare=False)


class ResourceContext:
    """The running resource as its plugin sees it.

    Attributes:
        name: the resource's MQTT name (its table key in the manifest).
        settings: the resource's ``settings`` table, as written in the manifest.
        resource: the :class:`sgframework.Resource`, created but not started:
            register commands and data in ``setup``; sghost starts it afterwards.
        logger: a logger whose lines reach sghost's log as ``[<name>] ...``.
        stopping: an :class:`threading.Event` set when the resource is asked to stop.
        base_directory: the directory relative paths in ``settings`` are relative to: the
            manifest's directory under ``sghost start`` (the current directory when not given).
    """

    def __init__(
        self, name: str, settings: Mapping[str, Any], resource: Resource, base_directory: str | Path | None = None
    ) -> None:
        self.name = name
        self.settings = settings
        self.resource = resource
        self.base_directory = Path(base_directory) if base_directory is not None else Path.cwd()
        self.logger = logging.getLogger(name)
        self.stopping = threading.Event()
        self._timers: list[_Timer] = []
        self._order = itertools.count()
        self._threads: list[threading.Thread] = []
        self._cleanups: list[Callable[[], Any]] = []
        self._ready_said = False
        self.on_ready: Callable[[], Any] | None = None
        """Set by sghost: tells the supervisor that :meth:`ready` was called."""
        self.on_thread_failure: Callable[[], Any] | None = None
        """Set by sghost: wakes the resource's main loop when a worker thread failed."""

    def path(self, value: str | Path) -> Path:
        """A path from the settings: ``~`` expanded, relative to :attr:`base_directory` unless absolute."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_directory / path

    def every(self, seconds: float, function: Callable[[], Any], *, first_after: float | None = None) -> None:
        """Call ``function()`` every ``seconds`` in the resource's main loop.

        It runs on the same thread as the MQTT callbacks, so it needs no locks;
        it must not block for long (the watchdog counts it as a hang). An
        exception is logged and the timer keeps running.
        """
        if seconds <= 0:
            raise ValueError(f"every(): the interval must be positive, not {seconds!r}")
        delay = seconds if first_after is None else first_after
        heapq.heappush(self._timers, _Timer(time.monotonic() + delay, next(self._order), seconds, function))

    def run_in_thread(self, function: Callable[[threading.Event], Any], name: str | None = None) -> None:
        """Run ``function(stopping)`` in a daemon thread, for a blocking loop (serial port, socket).

        The function should return soon after ``stopping`` is set. An exception
        ends the resource's process with that error, so that sghost restarts it.
        """
        thread = threading.Thread(
            target=self._run_guarded, args=(function,), name=name or f"{self.name}-worker", daemon=True
        )
        self._threads.append(thread)

    def on_stop(self, function: Callable[[], Any]) -> None:
        """Call ``function()`` when the resource stops, before its presence becomes ``False``."""
        self._cleanups.append(function)

    def ready(self) -> None:
        """Say that the resource is ready, for a type registered with ``ready="signal"``.

        Resources that ``depends_on`` this one start only then. Call it once the
        hardware is open or the first reading is in, from ``setup``, a timer or
        a thread; later calls do nothing. Without the call within the manifest's
        ``ready_timeout``, the resource counts as failed and is restarted.
        """
        if self._ready_said:
            return
        self._ready_said = True
        if self.on_ready is not None:
            self.on_ready()

    # ------------------------------------------------------- used by sghost

    thread_failure: BaseException | None = None

    def start_threads(self) -> None:
        for thread in self._threads:
            thread.start()

    def run_due_timers(self) -> float | None:
        """Run the timers that are due; return seconds until the next one, or ``None``."""
        now = time.monotonic()
        while self._timers and self._timers[0].due <= now:
            timer = heapq.heappop(self._timers)
            try:
                timer.function()
            except Exception:
                self.logger.exception("A periodic task of %s raised an exception", self.name)
            timer.due = max(timer.due + timer.interval, time.monotonic())
            heapq.heappush(self._timers, timer)
            now = time.monotonic()
        return self._timers[0].due - now if self._timers else None

    def run_cleanups(self) -> None:
        self.stopping.set()
        for cleanup in reversed(self._cleanups):
            try:
                cleanup()
            except Exception:
                self.logger.exception("A cleanup function of %s raised an exception", self.name)
        for thread in self._threads:
            thread.join(timeout=1.0)

    def _run_guarded(self, function: Callable[[threading.Event], Any]) -> None:
        try:
            function(self.stopping)
        except BaseException as error:
            self.logger.exception("The worker thread of %s failed", self.name)
            self.thread_failure = error
            if self.on_thread_failure is not None:
                self.on_thread_failure()
