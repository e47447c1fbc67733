"""A canbus resource against a real broker and a python-can ``virtual`` bus in this process."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from canbus_helpers import receive_frame, send_frame
from sghost.context import ResourceContext
from sghost.plugins import PluginRegistry
from sghost.testing import MosquittoBroker, Recorder, retained, wait_until

import sghost_canbus

ResourceStarter = Callable[..., ResourceContext]


def bus_settings(channel: str, **extra: Any) -> dict[str, Any]:
    return {"database": "climate.kcd", "mapping": "mapping.json", "interface": "virtual", "channel": channel, **extra}


def test_reference_frame_becomes_the_originals_values(
    start_canbus: ResourceStarter, peer: Any, virtual_channel: str, mosquitto: MosquittoBroker,
    mqtt_recorder: Callable[..., Recorder],
) -> None:
    recorder = mqtt_recorder(mosquitto, ["data/climate/#", "dataavailable/climate/#", "commandavailable/climate/#"])
    start_canbus(bus_settings(virtual_channel))
    for name in ("vehiclespeed", "enginespeed", "actualindoortemperature", "fanlevel", "climate"):
        recorder.wait_for(f"dataavailable/climate/{name}", "True")
    send_frame(peer, "008#00FF00FF00000000")
    assert recorder.wait_for("data/climate/vehiclespeed").payload == "2.5500000000000003"
    assert recorder.wait_for("data/climate/enginespeed").payload == "63.0"
    # Only toCan signals and aggregates are commands; fromCan-only ones are not.
    for name in ("aircondition", "fanlevel", "ADAS_Seg"):
        recorder.wait_for(f"commandavailable/climate/{name}", "True")
    announced = retained(mosquitto, "+/climate/+")  # start() returned once every announcement was acknowledged
    assert "commandavailable/climate/actualindoortemperature" not in announced
    assert "dataavailable/climate/ADAS_Seg" not in announced


def test_scaling_types_and_aggregates_from_the_bus(
    start_canbus: ResourceStarter, peer: Any, virtual_channel: str, mosquitto: MosquittoBroker,
    mqtt_recorder: Callable[..., Recorder],
) -> None:
    recorder = mqtt_recorder(mosquitto, "data/climate/#")
    start_canbus(bus_settings(virtual_channel))
    send_frame(peer, "009#01D7050000000000")  # indoortemperature -41 * 0.5; fanlevel 5 (x10, int)
    assert recorder.wait_for("data/climate/actualindoortemperature").payload == "-20.5"
    assert recorder.wait_for("data/climate/fanlevel").payload == "50"
    send_frame(peer, "011#F6ABC0")
    message = recorder.wait_for("data/climate/climate")  # frames are taken in order: 0x009 is done
    assert not recorder.on("data/climate/aircondition")  # fromCan false
    assert json.loads(message.payload) == {"values": {"outdoor": -10, "humidity": 2748.0}}


def test_commands_become_frames_with_the_other_signals_last_seen(
    start_canbus: ResourceStarter, peer: Any, virtual_channel: str, mosquitto: MosquittoBroker,
    mqtt_recorder: Callable[..., Recorder],
) -> None:
    recorder = mqtt_recorder(mosquitto, ["data/climate/#", "commandavailable/climate/#"])
    start_canbus(bus_settings(virtual_channel))
    recorder.wait_for("commandavailable/climate/aircondition", "True")

    recorder.publish("command/climate/aircondition", "True")  # a one-bit signal takes True/False
    frame = receive_frame(peer, 0x009)
    assert bytes(frame.data) == bytes.fromhex("0100000000000000")  # never seen: initial values, else zero
    recorder.wait_for("data/climate/aircondition", "True")  # mqttEcho

    send_frame(peer, "009#00D7030000000000")  # the bus now says: indoortemperature -20.5, fanlevel 3
    recorder.wait_for("data/climate/fanlevel", "30")
    recorder.publish("command/climate/aircondition", "1")
    assert bytes(receive_frame(peer, 0x009).data) == bytes.fromhex("01D7030000000000")
    recorder.publish("command/climate/fanlevel", "70")  # canMultiplier 10: raw 7, not echoed
    assert bytes(receive_frame(peer, 0x009).data) == bytes.fromhex("01D7070000000000")
    assert len(frame.data) == 8  # the frame's length from the database


def test_aggregate_command_is_json(
    start_canbus: ResourceStarter, peer: Any, virtual_channel: str, mosquitto: MosquittoBroker,
    mqtt_recorder: Callable[..., Recorder],
) -> None:
    recorder = mqtt_recorder(mosquitto, "commandavailable/climate/#")
    start_canbus(bus_settings(virtual_channel))
    recorder.wait_for("commandavailable/climate/ADAS_Seg", "True")
    command = {"values": {"ADAS_Seg_MsgType": 5, "ADAS_Seg_Offset": 2.5}}
    recorder.publish("command/climate/ADAS_Seg", json.dumps(command))
    assert bytes(receive_frame(peer, 0x010).data) == bytes.fromhex("0505000000000000")


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("aircondition", "maybe", "'maybe' is not a number"),
        ("aircondition", "2", "2.0 is out of range; expected 0 to 1"),
        ("fanlevel", "True", "True/False only for one-bit signals"),
        ("fanlevel", "160", "160.0 is out of range; expected 0 to 150"),
        ("fanlevel", "nan", "nan is out of range"),
        ("ADAS_Seg", "{", "not JSON"),
        ("ADAS_Seg", '{"values": {"ADAS_Seg_MsgType": 9}}', "ADAS_Seg_MsgType: 9.0 is out of range; expected 0 to 7"),
        ("ADAS_Seg", '{"values": {"speed": 1}}', "unknown signal(s) speed"),
    ],
)
def test_bad_commands_are_refused_logged_and_nothing_is_sent(
    topic: str, payload: str, reason: str,
    start_canbus: ResourceStarter, peer: Any, virtual_channel: str, mosquitto: MosquittoBroker,
    mqtt_recorder: Callable[..., Recorder], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="climate")
    recorder = mqtt_recorder(mosquitto, ["data/climate/#", "commandavailable/climate/#"])
    start_canbus(bus_settings(virtual_channel))
    recorder.wait_for(f"commandavailable/climate/{topic}", "True")
    for _ in range(3):
        recorder.publish(f"command/climate/{topic}", payload)
    recorder.publish("command/climate/aircondition", "False")  # a good command after the bad ones still works
    assert bytes(receive_frame(peer, 0x009).data) == bytes(8)  # the first frame on the bus is the good one
    refused = [m for m in caplog.messages if m.startswith(f"Refused command/climate/{topic}")]
    assert len(refused) == 1, caplog.messages  # rate-limited: one line for the three
    assert reason in refused[0] and "nothing sent" in refused[0]
    assert recorder.wait_for("data/climate/aircondition", "False")
    assert all(m.payload != payload for m in recorder.on(f"data/climate/{topic}"))


def test_a_frame_shorter_than_the_database_says_is_ignored_with_a_log_line(
    start_canbus: ResourceStarter, peer: Any, virtual_channel: str, mosquitto: MosquittoBroker,
    mqtt_recorder: Callable[..., Recorder], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="climate")
    recorder = mqtt_recorder(mosquitto, "data/climate/#")
    start_canbus(bus_settings(virtual_channel))
    send_frame(peer, "008#00FF")
    send_frame(peer, "008#00FF00FF00000000")  # the next good frame is published
    recorder.wait_for("data/climate/enginespeed", "63.0")
    assert [m.payload for m in recorder.on("data/climate/vehiclespeed")] == ["2.5500000000000003"]
    assert "Ignored frame vehicledata (0x8) with 2 bytes: the database says 8" in caplog.messages


def test_min_interval_throttles_and_sends_the_final_value(
    start_canbus: ResourceStarter, peer: Any, virtual_channel: str, mosquitto: MosquittoBroker,
    mqtt_recorder: Callable[..., Recorder], tmp_path: Path,
) -> None:
    recorder = mqtt_recorder(mosquitto, "data/climate/#")
    signals = [{"canName": "enginespeed", "min_interval": 0.3}, {"canName": "vehiclespeed", "on_change_only": True}]
    start_canbus({"database": "climate.kcd", "signals": signals, "interface": "virtual", "channel": virtual_channel})
    for value in range(100):
        send_frame(peer, f"008#0001{value << 2:04X}00000000")  # vehiclespeed constant, enginespeed 0..99
    recorder.wait_for("data/climate/enginespeed", "99.0")
    engine = [m.payload for m in recorder.on("data/climate/enginespeed")]
    assert engine[0] == "0.0" and engine[-1] == "99.0" and len(engine) < 10, engine
    assert [m.payload for m in recorder.on("data/climate/vehiclespeed")] == ["0.01"]  # on_change_only


def test_inline_tables_and_an_ego_node(
    start_canbus: ResourceStarter, peer: Any, virtual_channel: str, mosquitto: MosquittoBroker,
    mqtt_recorder: Callable[..., Recorder],
) -> None:
    recorder = mqtt_recorder(mosquitto, "commandavailable/climate/#")
    settings = {
        "database": "climate.kcd", "interface": "virtual", "channel": virtual_channel, "node": 1,
        "signals": [{"canName": "acstatus", "toCan": True, "fromCan": False}],
        "aggregates": [{"mqttName": "seg", "toCan": True, "fromCan": False,
                        "signals": [{"canName": "ADAS_Seg_MsgType"}]}],
    }
    start_canbus(settings)
    recorder.wait_for("commandavailable/climate/seg", "True")
    recorder.publish("command/climate/acstatus", "True")
    assert bytes(receive_frame(peer, 0x009).data)[0] == 1


def test_entry_point_is_discovered() -> None:
    registry = PluginRegistry()
    registry.load(autoload=True)
    kind = registry.get("canbus")
    assert kind.setup is sghost_canbus.setup and kind.check_settings is sghost_canbus.check_settings
    (info,) = [info for info in registry.plugins if info.name == "canbus"]
    assert info.error is None and info.distribution == "sghost-canbus"


def test_plugin_module_imports_neither_python_can_nor_cantools() -> None:
    import subprocess
    import sys

    code = "import sys, sghost_canbus; print(sorted({'can', 'cantools'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_at_qos_0_frames_are_not_published_while_the_broker_is_away(
    fresh_mosquitto: MosquittoBroker, can_files: Path, peer: Any, virtual_channel: str,
    mqtt_recorder: Callable[..., Recorder], caplog: pytest.LogCaptureFixture,
) -> None:
    from sgframework import Resource

    caplog.set_level(logging.WARNING)
    resource = Resource("climate", fresh_mosquitto.host, fresh_mosquitto.port)
    resource.qos = 0
    context = ResourceContext("climate", bus_settings(virtual_channel), resource, can_files)
    sghost_canbus.setup(context)
    resource.start(use_threaded_networking=True)
    context.start_threads()
    try:
        fresh_mosquitto.stop()
        assert wait_until(lambda: not resource.is_connected), "the resource did not notice the broker's stop"
        for _ in range(20):
            send_frame(peer, "008#00FF00FF00000000")

        def offline_lines() -> list[str]:
            return [m for m in caplog.messages if m.startswith("Not connected to the broker")]

        assert wait_until(offline_lines)
        fresh_mosquitto.start()
        recorder = mqtt_recorder(fresh_mosquitto, "data/climate/#")
        assert wait_until(lambda: resource.is_connected, timeout=15)
        send_frame(peer, "008#00FF00FF00000000")
        recorder.wait_for("data/climate/enginespeed", "63.0", timeout=10)
        # Frames are taken in order: by now the reader has taken all 20, and said so once.
        assert offline_lines() == ["Not connected to the broker: frame 0x8 not published"]
        assert not [m for m in caplog.messages if m.startswith("Dropped")]
    finally:
        context.run_cleanups()
        resource.stop()
