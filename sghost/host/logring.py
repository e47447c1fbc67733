"""Every resource's recent output in memory, for ``sghost logs`` and ``sghost status``.

Each resource has a bounded ring of its last lines (stdout, stderr and its
logger, which writes to stderr): at most :data:`MAX_LINES` lines and
:data:`MAX_BYTES` bytes of text, the oldest dropped first. The ring outlives
the process, so the last lines of a resource that crashed stay readable.

A line longer than :data:`MAX_LINE_CHARS` is cut and ends with a visible
marker (:data:`CUT_MARKER`) that counts the characters cut, however long the
line was: the pipe reader keeps only a line's first :data:`MAX_LINE_BYTES`
bytes and counts the rest as it arrives (:mod:`sghost.process.lines`). Control characters (binary garbage on a pipe)
are shown as ``\\xNN``; bytes that are not UTF-8 arrive as U+FFFD, so nothing
a child writes breaks the ring or the terminal of whoever reads it.

``sghost logs -f`` keeps its control connection open: :class:`LogBook` sends
each new line to it as a JSON line, never blocking the supervisor; a reader
that falls :data:`MAX_FOLLOWER_BACKLOG` bytes behind is disconnected.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from sghost.host.socketfollower import SocketFollower
from sghost.process.lines import CUT_MARKER, MAX_LINE_BYTES, cut_line

MAX_LINES = 1000
"""Lines kept per resource."""
MAX_BYTES = 256 * 1024
"""Bytes kept per resource: each line's text (UTF-8) plus 200 bytes for its objects, about its memory."""
MAX_LINE_CHARS = 4096
"""Characters kept of one line; the rest is replaced by the cut marker (CUT_MARKER, from sghost.process.lines)."""
MAX_FOLLOWERS = 16
MAX_FOLLOWER_BACKLOG = 1 << 20
"""Bytes waiting for one ``sghost logs -f`` reader before it is disconnected."""
DEFAULT_TAIL = 50
_ENTRY_OVERHEAD = 200
"""Bytes counted per line besides its text: what Python spends on one line's objects (bench/logring.py)."""

_CONTROL = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F] if code != 0x09}

log = logging.getLogger("sghost")


def clean_line(text: str) -> str:
    """A line as kept: control characters escaped, cut at MAX_LINE_CHARS with a marker."""
    return cut_line(text.translate(_CONTROL), MAX_LINE_CHARS)


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of one resource's output."""

    sequence: int
    """Grows by one per line over all resources: the order to interleave them in."""
    at: float
    """Wall-clock time (seconds since the epoch) the supervisor read it."""
    resource: str
    stream: str
    """``stdout`` or ``stderr``."""
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"resource": self.resource, "stream": self.stream, "text": self.text, "at": self.at}


class LogRing:
    """One resource's last lines, bounded in lines and bytes."""

    def __init__(self, max_lines: int = MAX_LINES, max_bytes: int = MAX_BYTES) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.lines: deque[LogLine] = deque()
        self.size = 0
        self.last_stderr: str | None = None

    def append(self, line: LogLine) -> None:
        self.lines.append(line)
        self.size += _cost(line)
        if line.stream == "stderr":
            self.last_stderr = line.text
        while len(self.lines) > self.max_lines or (self.size > self.max_bytes and len(self.lines) > 1):
            self.size -= _cost(self.lines.popleft())

    def last(self, count: int) -> list[LogLine]:
        return list(self.lines)[-count:] if count > 0 else []


def _cost(line: LogLine) -> int:
    return len(line.text.encode("utf-8", errors="replace")) + _ENTRY_OVERHEAD


class _Follower(SocketFollower):
    """A ``sghost logs -f`` reader: every resource's lines, or one resource's."""

    def __init__(self, sock: socket.socket, resource: str | None) -> None:
        super().__init__(sock, MAX_FOLLOWER_BACKLOG)
        self.resource = resource

    def wants(self, line: LogLine) -> bool:
        return self.resource is None or self.resource == line.resource


class LogBook:
    """Every resource's ring, and the ``sghost logs -f`` readers."""

    def __init__(self, max_lines: int = MAX_LINES, max_bytes: int = MAX_BYTES) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.rings: dict[str, LogRing] = {}
        self._sequence = 0
        self._followers: list[_Follower] = []

    def add(self, resource: str, stream: str, text: str) -> LogLine:
        self._sequence += 1
        line = LogLine(self._sequence, time.time(), resource, stream, clean_line(text))
        ring = self.rings.get(resource)
        if ring is None:
            ring = self.rings[resource] = LogRing(self.max_lines, self.max_bytes)
        ring.append(line)
        if self._followers:
            self._tell_followers(line)
        return line

    def last_stderr(self, resource: str) -> str | None:
        ring = self.rings.get(resource)
        return ring.last_stderr if ring is not None else None

    def tail(self, resource: str | None, count: int) -> list[LogLine]:
        """The last ``count`` lines of one resource, or of all of them interleaved in arrival order."""
        if resource is not None:
            ring = self.rings.get(resource)
            return ring.last(count) if ring is not None else []
        merged = sorted((line for ring in self.rings.values() for line in ring.last(count)), key=_by_sequence)
        return merged[-count:] if count > 0 else []

    def forget(self, resource: str) -> None:
        self.rings.pop(resource, None)

    @property
    def followers_full(self) -> bool:
        return len(self._followers) >= MAX_FOLLOWERS

    def follow(self, sock: socket.socket, resource: str | None) -> bool:
        """Send every new line (of ``resource``, or of all) to ``sock`` until it goes; False when too many follow."""
        if self.followers_full:
            return False
        self._followers.append(_Follower(sock, resource))
        return True

    def close(self) -> None:
        """End every follower's stream (the host is stopping)."""
        for follower in self._followers:
            follower.close()
        self._followers.clear()

    def _tell_followers(self, line: LogLine) -> None:
        data = (json.dumps(line.as_dict(), separators=(",", ":")) + "\n").encode()
        kept = []
        for follower in self._followers:
            if not follower.wants(line) or follower.send(data):
                kept.append(follower)
                continue
            if follower.too_far_behind:
                log.warning("sghost logs -f: a reader fell %d KiB behind; disconnected", len(follower.backlog) // 1024)
            follower.close()
        self._followers = kept


def _by_sequence(line: LogLine) -> int:
    return line.sequence


__all__ = [
    "CUT_MARKER", "DEFAULT_TAIL", "MAX_BYTES", "MAX_LINES", "MAX_LINE_BYTES", "MAX_LINE_CHARS", "LogBook", "LogLine",
    "LogRing",
]
