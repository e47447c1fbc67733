"""Splitting a byte stream from a pipe into text lines, with a bound on line length."""

from __future__ import annotations

MAX_LINE_BYTES = 16 * 1024


class LineSplitter:
    """Feed it chunks; it returns complete lines. Over-long lines are cut, never buffered forever."""

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self._buffer = bytearray()
        self._max_line = max_line

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk
        lines: list[str] = []
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                break
            lines.append(self._take(newline, 1))
        while len(self._buffer) >= self._max_line:
            lines.append(self._take(self._max_line, 0))
        return lines

    def flush(self) -> list[str]:
        """Return what is left (a last line without newline) at end of stream."""
        if not self._buffer:
            return []
        return [self._take(len(self._buffer), 0)]

    def _take(self, length: int, separator: int) -> str:
        line = bytes(self._buffer[:length]).decode("utf-8", errors="replace").rstrip("\r")
        del self._buffer[: length + separator]
        return line
