"""The bus description as the original read it: KCD big-endian positions, frame lengths, the fast decoder."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sghost_canbus.codec import FrameCodec
from sghost_canbus.database import DatabaseError, kcd_msb_start, load_database

DBC = """VERSION ""

BU_: ECU TESTER

BO_ 291 Mixed: 8 ECU
 SG_ little_unsigned : 0|12@1+ (0.5,10) [0|0] "" TESTER
 SG_ little_signed : 12|9@1- (1,0) [0|0] "" TESTER
 SG_ big_unsigned : 31|16@0+ (0.1,0) [0|0] "" TESTER
 SG_ big_signed : 45|11@0- (2,-5) [0|0] "" TESTER
 SG_ flag : 63|1@1+ (1,0) [0|1] "" TESTER

BO_ 2566848512 Extended: 4 ECU
 SG_ wide : 7|32@0- (1,0) [0|0] "" TESTER
"""


def test_kcd_reference_example_decodes_as_the_original(can_files: Path) -> None:
    database, _ = load_database(can_files / "climate.kcd")
    frame = FrameCodec(database.get_message_by_frame_id(0x008))
    data = bytes.fromhex("00FF00FF00000000")
    assert frame.decode_slow(data) == {"vehiclespeed": 2.5500000000000003, "enginespeed": 63.0}
    speed, engine = frame.signals["vehiclespeed"], frame.signals["enginespeed"]
    big = int.from_bytes(data, "big")
    assert speed.physical(speed.raw_of(big)) == 2.5500000000000003
    assert engine.physical(engine.raw_of(big)) == 63.0


def test_kcd_offset_is_the_least_significant_bit_growing_toward_byte_0() -> None:
    assert kcd_msb_start(8, 16) == 7  # bytes 1 and 0: MSB is bit 7 of byte 0
    assert kcd_msb_start(26, 14) == 23  # byte 3 bits 2..7, then byte 2
    assert kcd_msb_start(0, 8) == 7
    with pytest.raises(ValueError, match="before byte 0"):
        kcd_msb_start(7, 8)


def test_kcd_auto_length_follows_the_corrected_positions(can_files: Path) -> None:
    database, _ = load_database(can_files / "climate.kcd")
    status = FrameCodec(database.get_message_by_frame_id(0x011))
    assert status.length == 3  # humidity's LSB is in byte 2 (cantools alone would say otherwise)
    assert status.decode_slow(bytes.fromhex("F6ABC0")) == {"outdoortemperature": -10.0, "humidity": 2748.0}


def test_overlapping_kcd_signals_load_with_a_warning_unless_strict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Overlapping only once the offsets are read the KCD way: cantools alone would not see it.
    path = tmp_path / "overlap.kcd"
    path.write_text(
        '<NetworkDefinition xmlns="http://kayak.2codeornot2code.org/1.0"><Bus name="b">'
        '<Message id="0x001" name="m" length="2">'
        '<Signal name="a" offset="8" length="16" endianess="big"/>'
        '<Signal name="b" offset="4" length="4" endianess="big"/>'
        "</Message></Bus></NetworkDefinition>"
    )
    database, _ = load_database(path)
    assert database.get_message_by_frame_id(1).length == 2
    assert "overlap.kcd: frame m (0x1)" in caplog.text and "loaded anyway (strict = false)" in caplog.text
    with pytest.raises(DatabaseError, match=r"overlap.kcd: frame m \(0x1\).*strict = true"):
        load_database(path, strict=True)


def test_unreadable_database_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.dbc"
    path.write_text("BO_ this is not a DBC file\n")
    with pytest.raises(DatabaseError, match=r"broken\.dbc: cannot load the bus description"):
        load_database(path)


def test_fast_decoder_and_encoder_agree_with_cantools(tmp_path: Path) -> None:
    path = tmp_path / "mixed.dbc"
    path.write_text(DBC)
    database, _ = load_database(path)
    randomness = random.Random(12)
    for message in database.messages:
        frame = FrameCodec(message)
        assert frame.fast
        for _ in range(300):
            data = bytes(randomness.getrandbits(8) for _ in range(frame.length))
            expected = message.decode(data, decode_choices=False)
            big, little = int.from_bytes(data, "big"), int.from_bytes(data, "little")
            for name, codec in frame.signals.items():
                raw = codec.raw_of(big if codec.big_endian else little)
                assert codec.physical(raw) == pytest.approx(expected[name]), (message.name, name, data.hex())
            raws = {name: message.decode(data, decode_choices=False, scaling=False)[name] for name in frame.signals}
            assert frame.replace(bytes(frame.length), raws) == message.encode(raws, scaling=False, strict=False)
