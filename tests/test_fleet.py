"""``sghost status --all``: hosts on a shared real mosquitto, found from their retained health."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sghost.cli import fleet as fleet_module
from sghost.cli.fleet import FleetError, collect_fleet, format_fleet, parse_broker
from sghost.host.broker import MosquittoBroker, free_port
from sghost.testing import Recorder, run_sghost


def health(host: str, resources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "host": host, "version": "0.1.0", "pid": 100, "manifest": f"/etc/sghost/{host}.toml", "uptime": 60,
        "cpu": 0.5, "memory": 30.0, "memory_available_mb": 1000, "broker_connected": True, "resources": resources,
    }


GW1 = health("gw1", {
    "taxisign": {"state": "running", "restarts": 0, "pid": 1234, "uptime": 60, "cpu": 0.1, "memory": 20.0,
                 "error": None, "connected": True},
    "climate": {"state": "backoff", "restarts": 3, "pid": None, "uptime": 0, "cpu": 0.0, "memory": 0.0,
                "error": "exit code 2", "connected": False},
})
GW2 = health("gw2", {
    "doorsensor": {"state": "fatal", "restarts": 5, "pid": None, "uptime": 0, "cpu": 0.0, "memory": 0.0,
                   "error": "broker refused the connection: not authorised", "connected": False},
})


@pytest.fixture(scope="module")
def fleet_broker(mosquitto: MosquittoBroker) -> MosquittoBroker:
    """The module's broker holding two hosts' retained health and presence, plus noise that is no host."""
    publisher = Recorder(mosquitto.host, mosquitto.port, topics="sghost-test/none").start()
    try:
        publisher.publish("data/gw1/health", json.dumps(GW1), retain=True)
        publisher.publish("resourceavailable/gw1/presence", "True", retain=True)
        publisher.publish("data/gw2/health", json.dumps(GW2), retain=True)
        publisher.publish("resourceavailable/gw2/presence", "False", retain=True)  # gw2's last will fired
        # a plain resource: presence, and a "health" signal that is not a host's document
        publisher.publish("resourceavailable/taxisign/presence", "True", retain=True)
        publisher.publish("data/thermo/health", "ok", retain=True)
    finally:
        publisher.stop()
    return mosquitto


def rows(text: str, host: str) -> list[list[str]]:
    """The table rows of ``host``, split into cells (two or more spaces apart)."""
    return [re.split(r"\s{2,}", line) for line in text.splitlines() if line.split()[0] == host]


def test_collect_fleet_finds_both_hosts_and_ends_after_the_retained_messages(fleet_broker: MosquittoBroker) -> None:
    # The timeout is far beyond the test's own: the collection must end on the end of the
    # retained messages, never by waiting it out (bench/reaction.py measures how long it takes).
    collected: list[dict[str, Any]] = []
    collector = threading.Thread(
        target=lambda: collected.append(collect_fleet(fleet_broker.host, fleet_broker.port, timeout=3600)),
        daemon=True,
    )
    collector.start()
    collector.join(30)
    assert collected, "collect_fleet did not end after the retained messages"
    fleet = collected[0]
    assert sorted(fleet) == ["gw1", "gw2"]
    assert fleet["gw1"] == {"presence": "True", "health": GW1}
    assert fleet["gw2"] == {"presence": "False", "health": GW2}


def test_the_end_of_the_retained_messages_is_known_without_waiting_for_silence(
    fresh_mosquitto: MosquittoBroker, mqtt_recorder: Callable[..., Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A loaded gateway can pause the collector longer than any silence it would
    # wait for; the end marker's acknowledgement alone must bring every host, even
    # more than mosquitto's in-flight window of 20 QoS 1 messages.
    monkeypatch.setattr(fleet_module, "SETTLE", 0.0)
    names = [f"gw{number:03d}" for number in range(120)]
    publisher = mqtt_recorder(fresh_mosquitto, "sghost-test/none")
    for name in names:
        publisher.publish(f"data/{name}/health", json.dumps(health(name, {})), retain=True)
        publisher.publish(f"resourceavailable/{name}/presence", "True", retain=True)
    fleet = collect_fleet(fresh_mosquitto.host, fresh_mosquitto.port, timeout=10)
    assert sorted(fleet) == names
    assert {entry["presence"] for entry in fleet.values()} == {"True"}


def test_a_host_without_presence_and_a_cleared_health(
    fleet_broker: MosquittoBroker, mqtt_recorder: Callable[..., Recorder]
) -> None:
    publisher = mqtt_recorder(fleet_broker, "data/+/health")
    publisher.publish("data/gw3/health", json.dumps(health("gw3", {})), retain=True)
    try:
        publisher.wait_for("data/gw3/health")
        fleet = collect_fleet(fleet_broker.host, fleet_broker.port, timeout=5)
        assert fleet["gw3"]["presence"] is None
        assert rows(format_fleet(fleet), "gw3") == [["gw3", "unknown", "-", "-", "-", "-", "-"]]
    finally:
        publisher.publish("data/gw3/health", "", retain=True)  # an empty retained payload deletes it
    publisher.wait_for("data/gw3/health", payload="")
    assert sorted(collect_fleet(fleet_broker.host, fleet_broker.port, timeout=5)) == ["gw1", "gw2"]


def test_format_fleet() -> None:
    text = format_fleet({"gw1": {"presence": "True", "health": GW1}, "gw2": {"presence": "False", "health": GW2}})
    lines = text.splitlines()
    assert rows(text, "HOST") == [["HOST", "PRESENCE", "RESOURCE", "STATE", "PID", "RESTARTS", "LAST ERROR"]]
    assert rows(text, "gw1") == [
        ["gw1", "online", "taxisign", "running", "1234", "0", "-"],
        ["gw1", "online", "climate", "backoff", "-", "3", "exit code 2"],
    ]
    assert rows(text, "gw2") == [
        ["gw2", "offline (stale)", "doorsensor", "fatal", "-", "5", "broker refused the connection: not authorised"],
    ]
    assert len(lines) == 4
    # columns line up
    column = lines[0].index("RESOURCE")
    assert [line[column:].split()[0] for line in lines[1:]] == ["taxisign", "climate", "doorsensor"]
    assert format_fleet({}) == "(no sghost host found)"


def test_cli_status_all(fleet_broker: MosquittoBroker) -> None:
    result = run_sghost("status", "--all", "--broker", f"127.0.0.1:{fleet_broker.port}")
    assert result.returncode == 0, result.stderr
    assert [row[:3] for row in rows(result.stdout, "gw1")] == [
        ["gw1", "online", "taxisign"], ["gw1", "online", "climate"],
    ]
    assert [row[:3] for row in rows(result.stdout, "gw2")] == [["gw2", "offline (stale)", "doorsensor"]]
    assert "thermo" not in result.stdout
    assert "gw3" not in result.stdout
    as_json = run_sghost("status", "--all", "--json", "--broker", f"127.0.0.1:{fleet_broker.port}", "--timeout", "5")
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["gw1"]["health"] == GW1
    assert document["gw2"]["presence"] == "False"


def test_no_broker_is_a_clear_error() -> None:
    port = free_port()
    with pytest.raises(FleetError, match=f"cannot connect to the broker 127.0.0.1:{port}"):
        collect_fleet("127.0.0.1", port, timeout=2)
    result = run_sghost("status", "--all", "--broker", f"127.0.0.1:{port}", "--timeout", "2")
    assert result.returncode == 1
    assert f"cannot connect to the broker 127.0.0.1:{port}" in result.stderr


def test_empty_broker_finds_no_host(fresh_mosquitto: MosquittoBroker) -> None:
    assert collect_fleet(fresh_mosquitto.host, fresh_mosquitto.port, timeout=5) == {}
    result = run_sghost("status", "--all", "--broker", f"{fresh_mosquitto.host}:{fresh_mosquitto.port}")
    assert result.returncode == 1
    assert "no sghost host publishes health" in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [("broker", ("broker", 1883)), ("broker:8883", ("broker", 8883)), ("[::1]:1884", ("::1", 1884)),
     ("::1", ("::1", 1883)), ("[::1]", ("::1", 1883))],
)
def test_parse_broker(text: str, expected: tuple[str, int]) -> None:
    assert parse_broker(text) == expected


@pytest.mark.parametrize("text", ["", ":1883", "host:port", "host:0", "host:70000", "[::1"])
def test_parse_broker_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_broker(text)


def test_credential_flags_are_checked_before_connecting(tmp_path: Path) -> None:
    broker = f"127.0.0.1:{free_port()}"
    open_password = tmp_path / "password"
    open_password.write_text("s3cret\n")
    open_password.chmod(0o644)
    cases = {
        ("--broker", broker, "--certificate-directory", str(tmp_path / "nowhere")):
            f"sghost status: --certificate-directory: directory not found: {tmp_path / 'nowhere'}",
        ("--broker", broker, "--username", "ops", "--password-file", str(open_password)):
            f"sghost status: --password-file: {open_password} is readable or writable by group or others "
            f"(mode 0644); expected mode 0600: run chmod 600 {open_password}",
        ("--broker", broker, "--password-file", str(open_password)): "--password-file needs --username",
        ("--username", "ops"): "--username needs --broker (without it, the manifest's [broker] credentials",
    }
    for flags, message in cases.items():
        result = run_sghost("status", "--all", *flags)
        assert result.returncode == 2, (flags, result.stderr)
        assert message in result.stderr, (flags, result.stderr)
        assert "s3cret" not in result.stderr + result.stdout
    without_all = run_sghost("status", "--broker", broker, "--username", "ops")
    assert without_all.returncode == 2
    assert "sghost status: --broker, --username need --all" in without_all.stderr
