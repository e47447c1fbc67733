"""Splitting a byte stream from a pipe into text lines, with a bound on line length.

A line longer than ``max_line`` bytes is kept as one line: its first ``max_line`` bytes and
:data:`CUT_MARKER` saying how many characters were cut. The rest of it is counted and dropped
as it arrives, never buffered, and the line is returned at its newline (or at end of stream).
The lines after it are intact.
"""

from __future__ import annotations

import re

MAX_LINE_BYTES = 16 * 1024
CUT_MARKER = " [... {count} more characters cut]"
"""Ends a line that was cut; ``count`` is in characters (UTF-8 code points) of the original line."""
_CUT = re.compile(r" \[\.\.\. (\d+) more characters cut\]\Z")
_NOT_CONTINUATION_BYTES = bytes([*range(0x80), *range(0xC0, 0x100)])


def cut_line(text: str, max_chars: int) -> str:
    """``text`` cut at ``max_chars`` characters with :data:`CUT_MARKER`; one already cut keeps its count."""
    already = _CUT.search(text)
    cut_before = 0
    if already is not None:
        cut_before = int(already.group(1))
        text = text[: already.start()]
    if len(text) > max_chars:
        cut_before += len(text) - max_chars
        text = text[:max_chars]
    return text + CUT_MARKER.format(count=cut_before) if cut_before else text


def _characters(data: bytes) -> int:
    """UTF-8 characters in ``data``: every byte that does not continue a character."""
    return len(data) - len(data.translate(None, delete=_NOT_CONTINUATION_BYTES))


class LineSplitter:
    """Feed it chunks; it returns complete lines. Over-long lines are cut, never buffered forever."""

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self._buffer = bytearray()
        self._max_line = max_line
        self._dropped = 0
        """Characters dropped from the line being read, beyond its first ``max_line`` bytes."""

    def feed(self, chunk: bytes) -> list[str]:
        lines: list[str] = []
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            self._keep(chunk, start, len(chunk) if newline < 0 else newline)
            if newline < 0:
                return lines
            lines.append(self._take())
            start = newline + 1

    def flush(self) -> list[str]:
        """Return what is left (a last line without newline) at end of stream."""
        if not self._buffer and not self._dropped:
            return []
        return [self._take()]

    def _keep(self, chunk: bytes, start: int, end: int) -> None:
        """Keep ``chunk[start:end]`` (part of one line) up to the bound; count what is beyond it."""
        kept = min(end - start, self._max_line - len(self._buffer))
        self._buffer += chunk[start : start + kept]
        if start + kept < end:
            self._dropped += _characters(chunk[start + kept : end])

    def _take(self) -> str:
        line = bytes(self._buffer).decode("utf-8", errors="replace").rstrip("\r")
        if self._dropped:
            line += CUT_MARKER.format(count=self._dropped)
        self._buffer.clear()
        self._dropped = 0
        return line
