"""The supervisor's event loop: one selector, the timers, and signals turned into readable bytes.

Single-threaded by design (the zygote is forked from this process, and a fork
copies locks in whatever state other threads left them): every part of the
host runs from here, either because a file descriptor became readable or
because a timer fell due.
"""

from __future__ import annotations

import os
import selectors
import signal
from collections.abc import Callable
from typing import Any

from sghost.host.timers import Timers
from sghost.process.pipes import ChildPipes

TICK = 1.0
"""The longest the loop sleeps when no timer is due sooner."""
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class EventLoop:
    """Calls a registered handler when its file descriptor is readable, and the timers when due."""

    def __init__(self) -> None:
        self.timers = Timers()
        self.selector = selectors.DefaultSelector()
        self._pipe_owner: dict[int, ChildPipes] = {}
        self._signal_r = -1

    def register(self, fileobj: Any, handler: Callable[[], None]) -> None:
        """Call ``handler()`` whenever ``fileobj`` (an fd or an object with ``fileno()``) is readable."""
        self.selector.register(fileobj, selectors.EVENT_READ, handler)

    def unregister(self, fileobj: Any) -> None:
        self.selector.unregister(fileobj)

    # ------------------------------------------------ pipes (process.pipes.PipeHost)

    def watch_pipes(self, pipes: ChildPipes, fds: list[int]) -> None:
        for fd in fds:
            self._pipe_owner[fd] = pipes
            self.register(fd, lambda fd=fd, pipes=pipes: pipes.read(fd))

    def unwatch_pipe(self, fd: int) -> None:
        if self._pipe_owner.pop(fd, None) is not None:
            self.selector.unregister(fd)

    # ----------------------------------------------------------------- signals

    def install_signals(self, on_signal: Callable[[int], None]) -> None:
        """Deliver SIGTERM, SIGINT and SIGHUP to ``on_signal(signum)`` from the loop, not from a handler."""
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        signal.set_wakeup_fd(write_end)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, lambda *_: None)
        self._signal_r = read_end

        def read_signals() -> None:
            try:
                received = os.read(read_end, 512)
            except BlockingIOError:
                return
            for signum in received:
                on_signal(signum)

        self.register(read_end, read_signals)

    # -------------------------------------------------------------------- run

    def serve(self, done: Callable[[], bool], after_each: Callable[[], None]) -> None:
        """Run until ``done()``; ``after_each()`` follows every turn (after the due timers)."""
        while not done():
            for key, _mask in self.selector.select(self.timers.next_delay(TICK)):
                key.data()
            self.timers.run_due()
            after_each()
