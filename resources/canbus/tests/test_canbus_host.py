"""A canbus resource under a real ``sghost start``, joined to the test through a socat pty pair (no network)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from canbus_helpers import PtyPair, receive_frame, send_frame
from sghost.testing import HostProcess, MosquittoBroker, Recorder, manifest_text


def test_frames_become_messages_and_commands_become_frames(
    host_factory: Callable[..., HostProcess], pty_pair: PtyPair, can_files: Path,
    mosquitto: MosquittoBroker, mqtt_recorder: Callable[..., Recorder],
) -> None:
    import can

    resource_end, test_end = pty_pair.ends
    recorder = mqtt_recorder(mosquitto, ["data/climate/#", "commandavailable/climate/#", "data/gw/#"])
    host_factory(manifest_text(mosquitto, (
        '[resources.climate]\ntype = "canbus"\n[resources.climate.settings]\n'
        'database = "climate.kcd"\nmapping = "mapping.json"\n'
        f'interface = "serial"\nchannel = "{resource_end}"\n'
    ), host="gw"))
    bus = can.Bus(interface="serial", channel=test_end)
    try:
        recorder.wait_for("commandavailable/climate/aircondition", "True", timeout=20)
        send_frame(bus, "008#00FF00FF00000000")
        assert recorder.wait_for("data/climate/vehiclespeed").payload == "2.5500000000000003"
        assert recorder.wait_for("data/climate/enginespeed").payload == "63.0"
        recorder.publish("command/climate/aircondition", "True")
        assert bytes(receive_frame(bus, 0x009).data) == bytes.fromhex("0100000000000000")
        recorder.wait_for("data/climate/aircondition", "True")
    finally:
        bus.shutdown()
    # The line hangs up: the resource ends with the bus's error, and sghost restarts it (backing off).
    pty_pair.cut()
    error = recorder.wait_until(
        lambda: next((m.payload for m in recorder.on("data/gw/climate_error") if "CAN bus" in m.payload), None),
        timeout=20,
    )
    assert error == "plugin error: RuntimeError: reading the CAN bus failed: could not read from serial"
    recorder.wait_for("data/gw/climate_state", "backoff", timeout=20)


def test_a_bus_that_cannot_be_opened_is_the_resources_error_and_backs_off(
    host_factory: Callable[..., HostProcess], can_files: Path, mosquitto: MosquittoBroker,
    mqtt_recorder: Callable[..., Recorder],
) -> None:
    recorder = mqtt_recorder(mosquitto, "data/gw/#")
    missing = can_files / "no-such-tty"
    host = host_factory(manifest_text(mosquitto, (
        '[resources.climate]\ntype = "canbus"\nbackoff_initial = 0.2\nmax_restarts = 2\n'
        '[resources.climate.settings]\ndatabase = "climate.kcd"\nmapping = "mapping.json"\n'
        f'interface = "serial"\nchannel = "{missing}"\n'
    ), host="gw"))
    error = recorder.wait_until(
        lambda: next((m.payload for m in recorder.on("data/gw/climate_error") if "cannot open" in m.payload), None),
        timeout=20,
    )
    assert error, host.lines
    assert f"cannot open the CAN bus: interface 'serial', channel '{missing}': " in str(error)
    assert "No such file or directory" in str(error) or "could not" in str(error).lower()
    states: Any = recorder.wait_until(
        lambda: [m.payload for m in recorder.on("data/gw/climate_state") if m.payload in ("backoff", "fatal")],
        timeout=20,
    )
    assert "backoff" in states
