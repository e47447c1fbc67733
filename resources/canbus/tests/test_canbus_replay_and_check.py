"""Replay of candump -L logs, and the settings check that ``sghost check`` runs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sghost.context import ResourceContext
from sghost.plugins import settings_directory_set
from sghost.testing import MosquittoBroker, Recorder

import sghost_canbus
from sghost_canbus.replay import ReplayError, read_log

ResourceStarter = Callable[..., ResourceContext]

LOG = """(1430902923.138343) vcan0 008#00FF00FF00000000
(1430902923.148343) vcan0 009#0014000000000000
(1430902923.158343) vcan0 7FF#R
(1430902923.168343) vcan0 008#0100000400000000
"""


def test_replay_publishes_the_logged_frames(
    start_canbus: ResourceStarter, can_files: Path, mosquitto: MosquittoBroker,
    mqtt_recorder: Callable[..., Recorder], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="climate")
    (can_files / "drive.log").write_text(LOG)
    recorder = mqtt_recorder(mosquitto, ["data/climate/#", "commandavailable/climate/#"])
    context = start_canbus({"database": "climate.kcd", "mapping": "mapping.json", "replay": "drive.log"})
    recorder.wait_for("data/climate/enginespeed", "1.0")
    assert [m.payload for m in recorder.on("data/climate/vehiclespeed")] == ["2.5500000000000003", "2.56"]
    assert recorder.latest("data/climate/actualindoortemperature") == "10.0"
    # Without an interface there is no bus to send to: commands are refused with a log line.
    recorder.wait_for("commandavailable/climate/aircondition", "True")
    recorder.publish("command/climate/aircondition", "True")
    recorder.publish("command/climate/fanlevel", "lots")  # commands are taken in order: when this one is
    assert recorder.wait_until(lambda: any("command/climate/fanlevel 'lots'" in m for m in caplog.messages))
    assert any("no bus to send to" in m for m in caplog.messages)
    context.resource.send_data("enginespeed", 2.0)  # refused, the first is done; this comes after any echo of it
    recorder.wait_for("data/climate/enginespeed", "2.0")
    assert not recorder.on("data/climate/aircondition")


def test_replay_loops(
    start_canbus: ResourceStarter, can_files: Path, mosquitto: MosquittoBroker, mqtt_recorder: Callable[..., Recorder]
) -> None:
    (can_files / "drive.log").write_text(LOG)
    recorder = mqtt_recorder(mosquitto, "data/climate/enginespeed")
    start_canbus({"database": "climate.kcd", "mapping": "mapping.json", "replay": "drive.log", "loop": True})
    assert recorder.wait_until(lambda: len(recorder.on("data/climate/enginespeed")) >= 6, timeout=10)
    assert [m.payload for m in recorder.on("data/climate/enginespeed")][:4] == ["63.0", "1.0", "63.0", "1.0"]


def test_replay_with_an_interface_sends_commands_there(
    start_canbus: ResourceStarter, can_files: Path, peer: Any, virtual_channel: str, mosquitto: MosquittoBroker,
    mqtt_recorder: Callable[..., Recorder],
) -> None:
    from canbus_helpers import receive_frame

    (can_files / "drive.log").write_text(LOG)
    recorder = mqtt_recorder(mosquitto, "commandavailable/climate/#")
    start_canbus({"database": "climate.kcd", "mapping": "mapping.json", "replay": "drive.log",
                  "interface": "virtual", "channel": virtual_channel})
    recorder.wait_for("commandavailable/climate/aircondition", "True")
    recorder.publish("command/climate/aircondition", "True")
    assert bytes(receive_frame(peer, 0x009).data)[0] == 1


def test_bad_log_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.log"
    path.write_text("(1.0) can0 008#00\n(2.0) can0 008#0G\n")
    with pytest.raises(ReplayError, match=r"bad.log:2: data '0G' is not hexadecimal bytes"):
        read_log(path)
    path.write_text("\n")
    with pytest.raises(ReplayError, match="no frames"):
        read_log(path)


def check(settings: dict[str, Any], base: Path) -> list[str]:
    with settings_directory_set(base):
        return sghost_canbus.check_settings(settings)


def test_check_settings_accepts_the_originals_files(can_files: Path) -> None:
    assert check({"database": "climate.kcd", "mapping": "mapping.json"}, can_files) == []


def test_check_settings_names_what_is_wrong(can_files: Path) -> None:
    mapping = json.loads((can_files / "mapping.json").read_text())
    mapping["entities"]["signals"].append({"canName": "enginespeeed"})
    mapping["entities"]["signals"].append({"canName": "vehiclespeed", "mqttType": "double", "toCan": True})
    mapping["entities"]["aggregates"].append(
        {"mqttName": "mixed", "signals": [{"canName": "acstatus"}, {"canName": "humidity"}]})
    (can_files / "typo.json").write_text(json.dumps(mapping))
    problems = check({"database": "climate.kcd", "mapping": "typo.json", "node": "climate", "bitrate": -1}, can_files)
    shown = f"mapping: {can_files / 'typo.json'}: entities."
    unknown = 'no signal "enginespeeed" in climate.kcd; did you mean "enginespeed"?'
    assert f"{shown}signals[5].canName: {unknown}" in problems
    assert f"{shown}signals[6].mqttType: got 'double'; expected \"float\" or \"int\"" in problems
    assert any(p.startswith(f"{shown}signals[6]: toCan, but frame vehicledata (0x8)") and 'not by node "climate"' in p
               for p in problems), problems
    split = "its signals (acstatus, humidity) are not all in one frame; expected one frame"
    assert f"{shown}aggregates[2]: {split}" in problems
    assert "bitrate: got -1; expected a positive whole number of bit/s such as 500000" in problems


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"mapping": "mapping.json"}, "database: missing; expected the path of the bus description"),
        ({"database": "nowhere.dbc", "mapping": "mapping.json"}, "database: file not found: "),
        ({"database": "climate.kcd"}, "mapping: missing; expected the JSON mapping file"),
        ({"database": "climate.kcd", "mapping": "nowhere.json"}, "mapping: file not found: "),
        ({"database": "climate.kcd", "signals": [{"mqttName": "x"}]}, "signals[0].canName: missing"),
        ({"database": "climate.kcd", "signals": [{"canName": "acstatus", "min_interval": -1}]},
         "signals[0].min_interval: got -1; expected a number >= 0"),
        ({"database": "climate.kcd", "mapping": "mapping.json", "node": "roof"},
         "node: no node 'roof' in climate.kcd; its nodes: climate, vehicle"),
        ({"database": "climate.kcd", "mapping": "mapping.json", "replay": "none.log"}, "replay: file not found: "),
        ({"database": "climate.kcd", "mapping": "mapping.json", "loop": True}, "loop: set without replay"),
        ({"database": "climate.kcd", "mapping": "mapping.json", "bitrat": 5}, "bitrat: unknown key"),
    ],
)
def test_check_settings_problems(settings: dict[str, Any], problem: str, can_files: Path) -> None:
    problems = check(settings, can_files)
    assert any(p.startswith(problem) for p in problems), problems


def test_bad_json_mapping_is_named(can_files: Path) -> None:
    (can_files / "broken.json").write_text('{"entities": {"signals": [}}')
    (problem,) = check({"database": "climate.kcd", "mapping": "broken.json"}, can_files)
    assert problem.startswith(f"mapping: {can_files / 'broken.json'}: invalid JSON at line 1 column 27")


def test_sghost_check_names_an_unknown_signal_relative_to_the_manifest(can_files: Path, tmp_path: Path) -> None:
    """Paths are relative to the manifest's directory, wherever sghost runs from."""
    (can_files / "mapping.json").write_text(json.dumps({"entities": {"signals": [{"canName": "enginespeeed"}]}}))
    manifest = can_files / "hostconfig.toml"
    manifest.write_text(
        '[broker]\nhost = "127.0.0.1"\nport = 9\n'
        '[resources.climate]\ntype = "canbus"\n'
        '[resources.climate.settings]\ndatabase = "climate.kcd"\nmapping = "mapping.json"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "sghost", "check", "-c", str(manifest)],
        capture_output=True, text=True, timeout=60, cwd="/",
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        f"resources.climate.settings: mapping: {can_files / 'mapping.json'}: entities.signals[0].canName: "
        'no signal "enginespeeed" in climate.kcd; did you mean "enginespeed"?'
    ) in result.stdout + result.stderr


MUX_DBC = """VERSION ""

BU_: ECU

BO_ 100 Muxed: 8 ECU
 SG_ selector M : 0|8@1+ (1,0) [0|255] "" ECU
 SG_ pressure m1 : 8|16@1+ (0.1,0) [0|6553.5] "" ECU
 SG_ level m2 : 8|8@1- (1,0) [-128|127] "" ECU

BO_ 101 Floats: 4 ECU
 SG_ ratio : 0|32@1- (1,0) [0|0] "" ECU

SIG_VALTYPE_ 101 ratio : 1;
"""


def test_multiplexed_and_float_frames_are_decoded_by_cantools(
    start_canbus: ResourceStarter, can_files: Path, mosquitto: MosquittoBroker, mqtt_recorder: Callable[..., Recorder]
) -> None:
    (can_files / "mux.dbc").write_text(MUX_DBC)
    (can_files / "mux.log").write_text(
        "(1.000000) can0 064#01E8030000000000\n(1.001000) can0 064#02FF000000000000\n(1.002000) can0 065#0000C03F\n"
    )
    recorder = mqtt_recorder(mosquitto, "data/mux/#")
    signals = [{"canName": "pressure"}, {"canName": "level", "mqttType": "int"}, {"canName": "ratio"}]
    start_canbus({"database": "mux.dbc", "signals": signals, "replay": "mux.log"}, name="mux")
    assert recorder.wait_for("data/mux/pressure").payload == "100.0"
    assert recorder.wait_for("data/mux/level").payload == "-1"
    assert recorder.wait_for("data/mux/ratio").payload == "1.5"
    assert len(recorder.on("data/mux/pressure")) == 1  # the level frame carries no pressure


def test_sending_into_a_multiplexed_frame_is_a_settings_problem(can_files: Path) -> None:
    (can_files / "mux.dbc").write_text(MUX_DBC)
    problems = check({"database": "mux.dbc", "signals": [{"canName": "level", "toCan": True}]}, can_files)
    assert problems == [
        "signals[0]: toCan into frame Muxed (0x64), which is multiplexed; sending it is not supported"
    ]
