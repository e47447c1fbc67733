"""The supervisor's ends of one child process's pipes: events (JSON lines), stdout, stderr."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any, Protocol

from sghost.process import events
from sghost.process.lines import LineSplitter

STREAMS = ("events", "stdout", "stderr")


class PipeHost(Protocol):
    """The event loop that watches pipes and calls ``pipes.read(fd)`` when one is readable."""

    def watch_pipes(self, pipes: ChildPipes, fds: list[int]) -> None: ...
    def unwatch_pipe(self, fd: int) -> None: ...


class ChildPipes:
    """Creates a child's pipes and turns what arrives on them into events and output lines."""

    def __init__(
        self,
        host: PipeHost,
        on_event: Callable[[dict[str, Any]], None],
        on_output: Callable[[str, str], None],
    ) -> None:
        self.host = host
        self.on_event = on_event
        self.on_output = on_output
        self._streams: dict[int, str] = {}
        self._splitters: dict[int, LineSplitter] = {}
        self.inbound: int | None = None
        """The write end of a supervisor -> child pipe, when one was asked for."""

    def open(self, inbound: bool = False) -> list[int]:
        """Make new pipes; return the child's ends: events, stdout, stderr (and the inbound read end)."""
        self.close()
        child_ends: list[int] = []
        for stream in STREAMS:
            read_end, write_end = os.pipe()
            os.set_blocking(read_end, False)
            self._streams[read_end] = stream
            self._splitters[read_end] = LineSplitter()
            child_ends.append(write_end)
        if inbound:
            read_end, self.inbound = os.pipe()
            os.set_blocking(self.inbound, False)  # a child that stops reading must not stop the supervisor
            child_ends.append(read_end)
        self.host.watch_pipes(self, list(self._streams))
        return child_ends

    def data(self, fd: int, chunk: bytes) -> None:
        """Bytes from one pipe; empty at end of stream."""
        splitter = self._splitters.get(fd)
        if splitter is None:
            return
        stream = self._streams[fd]
        for line in splitter.feed(chunk) if chunk else splitter.flush():
            self._dispatch(stream, line)
        if not chunk:
            self._close_one(fd)

    def read(self, fd: int) -> bool:
        """Read what one pipe holds now; return False when nothing more is ready or it ended."""
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return False
        except OSError:
            chunk = b""
        self.data(fd, chunk)
        return bool(chunk)

    def drain(self) -> None:
        """Read what a dead process left in its pipes."""
        for fd in list(self._splitters):
            while fd in self._splitters and self.read(fd):
                pass

    def close(self) -> None:
        for fd in list(self._splitters):
            for line in self._splitters[fd].flush():
                self._dispatch(self._streams[fd], line)
            self._close_one(fd)
        if self.inbound is not None:
            os.close(self.inbound)
            self.inbound = None

    def _dispatch(self, stream: str, line: str) -> None:
        if stream != "events":
            self.on_output(stream, line)
            return
        event = events.parse_event(line)
        if event is not None:
            self.on_event(event)

    def _close_one(self, fd: int) -> None:
        if self._splitters.pop(fd, None) is None:
            return
        self._streams.pop(fd, None)
        self.host.unwatch_pipe(fd)
        with contextlib.suppress(OSError):
            os.close(fd)


_LEVELS = {name: getattr(logging, name) for name in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")}


def log_output(logger: logging.Logger, name: str, stream: str, line: str) -> tuple[int, str]:
    """Log a line a child printed as ``[<name>] ...``; return its level and text.

    A child's own log lines (``LEVEL logger: message``) keep their level; other
    lines are INFO on stdout and WARNING on stderr.
    """
    first, _, rest = line.partition(" ")
    level = _LEVELS.get(first)
    if level is None or not rest:
        level, rest = (logging.INFO if stream == "stdout" else logging.WARNING), line
    text = rest.removeprefix(f"{name}: ")
    logger.log(level, "[%s] %s", name, text)
    return level, text
