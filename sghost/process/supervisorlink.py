"""A resource process's side of the supervisor -> child pipe, and its ``context.ready()`` signal.

The supervisor writes one JSON object per line on the pipe (``inbound``):

- ``{"op": "rebirth"}``: publish presence, announcements and current values
  again (:meth:`sgframework.Resource.republish`).

Unknown ops are logged and ignored; a garbled line never ends the resource.
The child's main loop sleeps until it has work; the pipe is set to raise SIGIO
when a request (or the end of the pipe) arrives, whose handler wakes the loop
(``Resource.wake_callbacks()``), which then calls :meth:`SupervisorLink.poll`.
Threads started while SIGIO is blocked (see ``child.py``) leave it to the main thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
from collections.abc import Callable

from sgframework import Resource
from sghost.context import ResourceContext
from sghost.process import events
from sghost.process.lines import LineSplitter

REBIRTH = "rebirth"


class SupervisorLink:
    """Reads the supervisor's requests (non-blocking) and forwards ``context.ready()`` as an event."""

    def __init__(
        self, channel: events.EventWriter, inbound: list[int], resource: Resource, context: ResourceContext
    ) -> None:
        self.resource = resource
        self.fd = inbound[0] if inbound else None
        self.log = logging.getLogger(resource.name)
        self._splitter = LineSplitter()
        if self.fd is not None:
            os.set_blocking(self.fd, False)
            _signal_when_readable(self.fd, resource.wake_callbacks)
        context.on_ready = lambda: channel.send(events.READY_SIGNAL)

    def poll(self) -> None:
        """Carry out every request waiting on the pipe; return at once when there is none."""
        if self.fd is None:
            return
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                with contextlib.suppress(OSError):
                    os.close(self.fd)
                self.fd = None  # the supervisor is gone; the parent-death signal follows
                return
            for line in self._splitter.feed(chunk):
                self._apply(line)

    def _apply(self, line: str) -> None:
        try:
            request = json.loads(line)
            op = request["op"]
        except (ValueError, TypeError, KeyError):
            self.log.warning("ignored a request from sghost that is not valid: %r", line[:80])
            return
        if op == REBIRTH:
            sent = self.resource.republish()
            self.log.info("rebirth: %d message(s) published again", sent)
        else:
            self.log.warning("ignored an unknown request from sghost: %r", op)


def _signal_when_readable(fd: int, wake: Callable[[], None]) -> None:
    """Have the kernel send this process SIGIO when ``fd`` gets data or is closed; SIGIO calls ``wake()``."""
    signal.signal(signal.SIGIO, lambda _signum, _frame: wake())
    fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)
