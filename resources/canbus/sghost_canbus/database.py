"""The bus description, loaded with cantools, with KCD's big-endian positions read as the original did.

cantools reads a KCD big-endian signal's ``offset`` as its most significant bit, mirrored
within its byte. KCD (and the original Secure Gateway) mean the **least** significant bit
in byte-0-first numbering, the signal growing toward byte 0: frame ``008#00FF00FF00000000``
must give ``vehiclespeed`` 2.55 and ``enginespeed`` 63. :func:`load_database` therefore
recomputes the start bit of every big-endian KCD signal, then the frame lengths that KCD
derives from the signals (``length="auto"`` or absent), then checks for overlapping signals.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KCD_SUFFIX = ".kcd"


class DatabaseError(ValueError):
    """The bus description cannot be used; ``str()`` names the file and why."""


@dataclass
class KcdFacts:
    """What cantools does not keep from a KCD file: node ids and which frames have an explicit length."""

    node_ids: dict[str, str] = field(default_factory=dict)
    """Node id (as written) -> node name."""
    auto_length: set[int] = field(default_factory=set)
    """Frame ids whose length KCD derives from their signals."""


def kcd_msb_start(offset: int, length: int) -> int:
    """The cantools start bit (MSB, sawtooth numbering) of a big-endian KCD signal.

    ``offset`` is KCD's least significant bit (bit ``offset % 8`` of byte ``offset // 8``);
    walking toward the MSB goes up within a byte, then to bit 0 of the byte before.
    """
    position = offset % 8 + length - 1
    msb_byte = offset // 8 - position // 8
    if msb_byte < 0:
        raise ValueError(f"offset {offset} with length {length} reaches before byte 0")
    return msb_byte * 8 + position % 8


def _cantools_kcd_offset(start: int) -> int:
    """Undo cantools' reading of a big-endian KCD offset (it mirrors the bit within its byte)."""
    return 8 * (start // 8) + (7 - start % 8)


def read_kcd_facts(path: Path) -> KcdFacts:
    facts = KcdFacts()
    root = ElementTree.parse(path).getroot()
    for element in root.iter():
        tag = element.tag.rsplit("}", 1)[-1]
        if tag == "Node" and "id" in element.attrib:
            facts.node_ids[element.attrib["id"]] = element.attrib.get("name", "")
        elif tag == "Message" and element.attrib.get("length", "auto") == "auto":
            facts.auto_length.add(int(element.attrib["id"], 0))
    return facts


def _fix_kcd_message(message: Any, auto_length: bool) -> None:
    for signal in message.signals:
        if signal.byte_order == "big_endian":
            offset = _cantools_kcd_offset(signal.start)
            try:
                signal.start = kcd_msb_start(offset, signal.length)
            except ValueError as error:
                raise DatabaseError(f"frame {message.name} signal {signal.name}: {error}") from None
    if auto_length:
        message.length = max((_last_byte(signal) + 1 for signal in message.signals), default=0)


def _last_byte(signal: Any) -> int:
    """The index of the last byte a signal touches (its LSB's byte when big-endian)."""
    if signal.byte_order == "big_endian":
        return signal.start // 8 + (signal.length - 1 - signal.start % 8 + 7) // 8
    return (signal.start + signal.length - 1) // 8


def _check_layout(message: Any, path: Path, strict: bool, logger: logging.Logger) -> None:
    """cantools' strict check (overlaps, signals outside the frame), after any correction."""
    try:
        message.refresh(strict=True)
    except Exception as error:
        text = f"{path}: frame {message.name} (0x{message.frame_id:x}): {error}"
        if strict:
            raise DatabaseError(f"{text} (strict = true)") from None
        logger.warning("%s; loaded anyway (strict = false)", text)
        message.refresh(strict=False)


def load_database(path: Path, strict: bool = False, logger: logging.Logger | None = None) -> tuple[Any, KcdFacts]:
    """Load a DBC, KCD, ARXML or SYM file; KCD positions corrected as described above.

    Raises :class:`DatabaseError` naming the file when it cannot be read or, with
    ``strict``, when signals overlap.
    """
    import cantools  # heavy: only in the resource's process (and in check_settings)

    log = logger or logging.getLogger(__name__)
    try:
        database = cantools.database.load_file(str(path), strict=False)
    except FileNotFoundError:
        raise DatabaseError(f"{path}: file not found; expected a bus description (DBC, KCD, ARXML, SYM)") from None
    except Exception as error:
        detail = " ".join(str(error).split()) or type(error).__name__
        raise DatabaseError(f"{path}: cannot load the bus description: {detail}") from None
    facts = KcdFacts()
    if path.suffix.lower() == KCD_SUFFIX:
        try:
            facts = read_kcd_facts(path)
        except (ElementTree.ParseError, ValueError) as error:
            raise DatabaseError(f"{path}: {error}") from None
        for message in database.messages:
            _fix_kcd_message(message, message.frame_id in facts.auto_length)
    for message in database.messages:
        _check_layout(message, path, strict, log)
    return database, facts


def node_name(database: Any, facts: KcdFacts, node: str | int) -> str | None:
    """The database's name of ``node`` (given by name, or by KCD id); ``None`` if it has no such node."""
    names = {item.name for item in database.nodes}
    if isinstance(node, str) and node in names:
        return node
    for node_id, name in facts.node_ids.items():
        try:
            if int(node_id, 0) == int(node):
                return name
        except ValueError:
            if node_id == str(node):
                return name
    return None
