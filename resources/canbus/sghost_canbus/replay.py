"""``candump -L`` log files: ``(1430902923.138343) vcan0 009#02AA000000000000`` per line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_LINE = re.compile(r"^\((?P<time>\d+(?:\.\d*)?)\)\s+(?P<channel>\S+)\s+(?P<id>[0-9A-Fa-f]{1,8})#(?P<data>\S*)$")
_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})*$")


@dataclass(frozen=True)
class LoggedFrame:
    """One frame of a log: when it was recorded, its id and its bytes."""

    time: float
    frame_id: int
    data: bytes
    extended: bool


class ReplayError(ValueError):
    """A log line that is not ``(<time>) <channel> <id>#<hex data>``; names the file and line."""


def _parse_data(text: str) -> bytes | None:
    """The frame's bytes; ``None`` for a remote frame (``R``, ``R4``). CAN FD ``#<flags><data>`` is read."""
    if text.upper().startswith("R"):
        return None
    if text.startswith("#"):  # CAN FD: one flags nibble, then the data
        text = text[2:]
    text = text.replace(".", "")
    if not _HEX.match(text) or len(text) > 128:
        raise ValueError(f"data {text!r} is not hexadecimal bytes")
    return bytes.fromhex(text)


def read_log(path: Path) -> list[LoggedFrame]:
    """Every data frame of the log, in file order. Raises :class:`ReplayError` on a bad line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ReplayError(f"{path}: cannot read the log: {error}") from None
    frames: list[LoggedFrame] = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        match = _LINE.match(line)
        try:
            if match is None:
                raise ValueError("expected (<time>) <channel> <id>#<hex data> as candump -L writes")
            data = _parse_data(match["data"])
        except ValueError as error:
            raise ReplayError(f"{path}:{number}: {error}: {line[:80]!r}") from None
        if data is not None:
            frame_id = match["id"]
            frames.append(LoggedFrame(float(match["time"]), int(frame_id, 16), data, len(frame_id) > 3))
    if not frames:
        raise ReplayError(f"{path}: no frames; expected lines like (1430902923.138343) can0 009#02AA000000000000")
    return frames
