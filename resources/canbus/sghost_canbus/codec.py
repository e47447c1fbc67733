"""Fast decoding and encoding of the mapped signals of a frame: shifts and masks on one integer.

cantools' ``Message.decode`` costs tens of microseconds per frame; the hot path of a
busy bus needs a few. A :class:`SignalCodec` is compiled once from a cantools signal;
frames whose layout it cannot express (multiplexed frames, IEEE float signals) fall
back to cantools (``FrameCodec.fast`` is then ``False``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class RangeError(ValueError):
    """A value the signal cannot carry; ``str()`` says the signal's range."""


@dataclass(frozen=True)
class SignalCodec:
    """Where one signal sits in its frame and how its raw value scales."""

    name: str
    big_endian: bool
    shift: int
    """Position of the LSB in the frame read as one big-endian (or little-endian) integer."""
    mask: int
    length: int
    signed: bool
    scale: float
    offset: float
    minimum: float
    maximum: float
    initial_raw: int
    is_float: bool = False

    def raw_of(self, whole: int) -> int:
        raw = (whole >> self.shift) & self.mask
        if self.signed and raw >> (self.length - 1):
            raw -= 1 << self.length
        return raw

    def physical(self, raw: int) -> float:
        return raw * self.scale + self.offset

    def to_raw(self, physical: float) -> int:
        """The raw value for ``physical``; :class:`RangeError` outside the signal's range."""
        if not math.isfinite(physical) or not self.minimum - 1e-9 <= physical <= self.maximum + 1e-9:
            raise RangeError(f"{physical!r} is out of range; expected {self.minimum:g} to {self.maximum:g}")
        raw = round((physical - self.offset) / self.scale)
        low, high = raw_limits(self.length, self.signed)
        if not low <= raw <= high:
            raise RangeError(f"{physical!r} is out of range; expected {self.minimum:g} to {self.maximum:g}")
        return raw

    def insert(self, whole: int, raw: int) -> int:
        return (whole & ~(self.mask << self.shift)) | ((raw & self.mask) << self.shift)


def raw_limits(length: int, signed: bool) -> tuple[int, int]:
    return (-(1 << (length - 1)), (1 << (length - 1)) - 1) if signed else (0, (1 << length) - 1)


def compile_signal(signal: Any, frame_length: int) -> SignalCodec:
    """A :class:`SignalCodec` for a cantools signal in a frame of ``frame_length`` bytes."""
    length = signal.length
    if signal.byte_order == "big_endian":
        msb_byte, msb_bit = divmod(signal.start, 8)
        shift = (frame_length - 1 - msb_byte) * 8 + msb_bit - (length - 1)
    else:
        shift = signal.start
    if shift < 0 or shift + length > frame_length * 8:
        raise ValueError(f"signal {signal.name} does not fit in {frame_length} bytes")
    scale = float(signal.scale)
    offset = float(signal.offset)
    low, high = raw_limits(length, signal.is_signed)
    ends = sorted((low * scale + offset, high * scale + offset))
    minimum = float(signal.minimum) if signal.minimum is not None else ends[0]
    maximum = float(signal.maximum) if signal.maximum is not None else ends[1]
    initial = getattr(signal, "raw_initial", None)
    return SignalCodec(
        name=signal.name,
        big_endian=signal.byte_order == "big_endian",
        shift=shift,
        mask=(1 << length) - 1,
        length=length,
        signed=bool(signal.is_signed),
        scale=scale,
        offset=offset,
        minimum=minimum,
        maximum=maximum,
        initial_raw=int(initial) if isinstance(initial, int | float) else 0,
        is_float=bool(signal.is_float),
    )


class FrameCodec:
    """One frame of the database: its id, length and compiled signals."""

    def __init__(self, message: Any) -> None:
        self.message = message
        self.name: str = message.name
        self.frame_id: int = message.frame_id
        self.extended: bool = bool(message.is_extended_frame)
        self.length: int = message.length
        self.senders: tuple[str, ...] = tuple(message.senders or ())
        self.multiplexed = bool(message.is_multiplexed())
        self.signals = {signal.name: compile_signal(signal, self.length) for signal in message.signals}
        self.fast = not self.multiplexed and not any(codec.is_float for codec in self.signals.values())

    def label(self) -> str:
        return f"{self.name} (0x{self.frame_id:x})"

    def decode_slow(self, data: bytes) -> dict[str, float]:
        """All signals present in ``data`` as physical numbers, through cantools."""
        values = self.message.decode(bytes(data), decode_choices=False, scaling=True, allow_truncated=True)
        return {name: float(value) for name, value in values.items() if isinstance(value, int | float)}

    def initial_data(self) -> bytes:
        """The frame with every signal at its initial value from the database (zero when none)."""
        return self.replace(bytes(self.length), {name: codec.initial_raw for name, codec in self.signals.items()})

    def replace(self, data: bytes, raws: dict[str, int]) -> bytes:
        """``data`` with the given signals set to the given raw values."""
        data = bytes(data[: self.length]).ljust(self.length, b"\0")
        codecs = [(self.signals[name], raw) for name, raw in raws.items()]
        for big_endian, order in ((True, "big"), (False, "little")):
            chosen = [(codec, raw) for codec, raw in codecs if codec.big_endian is big_endian]
            if not chosen:
                continue
            whole = int.from_bytes(data, order)
            for codec, raw in chosen:
                whole = codec.insert(whole, raw)
            data = whole.to_bytes(self.length, order)
        return data
