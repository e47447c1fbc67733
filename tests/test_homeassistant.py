"""Home Assistant MQTT discovery: the configs as Home Assistant documents them, and a real host publishing them.

Rules checked (Home Assistant's MQTT discovery documentation): the topic is
``<prefix>/<component>/<node_id>/<object_id>/config`` with ids of
``[a-zA-Z0-9_-]``; the payload is a JSON object with ``unique_id``, a
``device`` (``identifiers``, ``name``...) and an ``origin`` (``name``
required); ``availability`` is a list of entries, each with its own
``topic`` and payloads; configs are retained and an empty retained payload
removes one; ``<prefix>/status`` = ``online`` is Home Assistant's birth.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

from hostharness import manifest_text, resource_pid, run_cli
from sghost import __version__
from sghost.health.homeassistant import (
    Gateway,
    command_entity,
    data_entity,
    decode_id,
    encode_id,
    gateway_entities,
    health_entities,
)
from sghost.testing import Recorder, retained

ID = re.compile(r"[a-zA-Z0-9_-]+")
TOPIC = re.compile(
    r"(?P<prefix>.+)/(?P<component>[a-z_]+)/(?P<node>[a-zA-Z0-9_-]+)/(?P<object>[a-zA-Z0-9_-]+)/config"
)
COMPONENTS = {"binary_sensor", "sensor", "button", "switch", "text"}
GATEWAY = Gateway(prefix="homeassistant", host="gw.1", version="9.9", remote_control=True)

ORIGIN = {"name": "sghost", "sw_version": "9.9", "support_url": "https://pypi.org/project/sghost/"}
HOST_ONLY = [
    {"topic": "resourceavailable/gw.1/presence", "payload_available": "True", "payload_not_available": "False"}
]
BOTH = [
    {"topic": "resourceavailable/roof.sign/presence", "payload_available": "True", "payload_not_available": "False"},
    {"topic": "resourceavailable/gw.1/presence", "payload_available": "True", "payload_not_available": "False"},
]
GATEWAY_DEVICE = {
    "identifiers": ["sghost-gw_2e1"],
    "name": "gw.1",
    "manufacturer": "sghost",
    "model": "sghost gateway",
    "sw_version": "9.9",
}
ROOF_DEVICE = {
    "identifiers": ["sghost-gw_2e1-res-roof_2esign"],
    "name": "roof.sign",
    "model": "taxisign",
    "sw_version": "1.0",
    "via_device": "sghost-gw_2e1",
}


def common(unique_id: str, device: dict, availability: list) -> dict:
    return {"unique_id": unique_id, "device": device, "origin": ORIGIN, "availability": availability,
            "availability_mode": "all", "qos": 1}


def configs(entities: list) -> dict[str, dict]:
    return {entity.topic(GATEWAY): entity.payload for entity in entities}


def test_ids_are_injective_and_of_the_allowed_characters() -> None:
    names = ["roof.sign", "roof_sign", "roof-sign", "roof sign", "roofsign", "röof", "a_2e", "a.", "_", "-"]
    encoded = [encode_id(name) for name in names]
    assert encoded[:2] == ["roof_2esign", "roof_5fsign"]
    assert len(set(encoded)) == len(names)
    assert all(re.fullmatch(r"[a-zA-Z0-9_]+", each) for each in encoded)  # no '-': it joins parts
    assert [decode_id(each) for each in encoded] == names


def test_resource_health_configs_are_written_out_as_home_assistant_reads_them() -> None:
    got = configs(health_entities(GATEWAY, "roof.sign", "taxisign", "1.0"))
    prefix = "homeassistant/{}/gw_2e1/res-roof_2esign-{}/config"
    state = "data/gw.1/roof.sign_state"
    assert got == {
        prefix.format("binary_sensor", "running"): {
            **common("sghost-gw_2e1-res-roof_2esign-running", ROOF_DEVICE, HOST_ONLY),
            "name": "Running", "device_class": "running", "state_topic": state,
            "value_template": "{{ 'ON' if value == 'running' else 'OFF' }}", "payload_on": "ON", "payload_off": "OFF",
        },
        prefix.format("sensor", "state"): {
            **common("sghost-gw_2e1-res-roof_2esign-state", ROOF_DEVICE, HOST_ONLY),
            "name": "State", "device_class": "enum", "state_topic": state, "icon": "mdi:state-machine",
            "options": ["starting", "running", "backoff", "stopping", "stopped", "fatal", "waiting"],
        },
        prefix.format("sensor", "restarts"): {
            **common("sghost-gw_2e1-res-roof_2esign-restarts", ROOF_DEVICE, HOST_ONLY),
            "name": "Restarts", "state_topic": "data/gw.1/roof.sign_restarts", "state_class": "total_increasing",
            "icon": "mdi:restart",
        },
        prefix.format("sensor", "cpu"): {
            **common("sghost-gw_2e1-res-roof_2esign-cpu", ROOF_DEVICE, HOST_ONLY),
            "name": "CPU", "state_topic": "data/gw.1/roof.sign_cpu", "unit_of_measurement": "%",
            "state_class": "measurement", "entity_category": "diagnostic", "icon": "mdi:cpu-64-bit",
        },
        prefix.format("sensor", "memory"): {
            **common("sghost-gw_2e1-res-roof_2esign-memory", ROOF_DEVICE, HOST_ONLY),
            "name": "Memory", "state_topic": "data/gw.1/roof.sign_memory", "unit_of_measurement": "MiB",
            "device_class": "data_size", "state_class": "measurement", "entity_category": "diagnostic",
        },
        prefix.format("sensor", "error"): {
            **common("sghost-gw_2e1-res-roof_2esign-error", ROOF_DEVICE, HOST_ONLY),
            "name": "Last error", "state_topic": "data/gw.1/roof.sign_error", "icon": "mdi:alert-circle-outline",
        },
        prefix.format("button", "restart"): {
            **common("sghost-gw_2e1-res-roof_2esign-restart", ROOF_DEVICE, HOST_ONLY),
            "name": "Restart", "device_class": "restart", "command_topic": "command/gw.1/restart",
            "payload_press": "roof.sign",
        },
    }


def test_the_restart_button_exists_only_with_remote_control() -> None:
    without = Gateway(prefix="homeassistant", host="gw.1", version="9.9", remote_control=False)
    components = [entity.component for entity in health_entities(without, "roof.sign", "taxisign", "1.0")]
    assert "button" not in components and len(components) == 6


def test_gateway_and_signal_configs_are_written_out_as_home_assistant_reads_them() -> None:
    assert configs(gateway_entities(GATEWAY)) == {
        "homeassistant/sensor/gw_2e1/host-cpu/config": {
            **common("sghost-gw_2e1-host-cpu", GATEWAY_DEVICE, HOST_ONLY),
            "name": "CPU", "state_topic": "data/gw.1/health", "value_template": "{{ value_json.cpu }}",
            "unit_of_measurement": "%", "state_class": "measurement", "entity_category": "diagnostic",
            "icon": "mdi:cpu-64-bit",
        },
        "homeassistant/sensor/gw_2e1/host-memory/config": {
            **common("sghost-gw_2e1-host-memory", GATEWAY_DEVICE, HOST_ONLY),
            "name": "Memory", "state_topic": "data/gw.1/health", "value_template": "{{ value_json.memory }}",
            "unit_of_measurement": "%", "state_class": "measurement", "entity_category": "diagnostic",
            "icon": "mdi:memory",
        },
    }
    signals = [
        data_entity(GATEWAY, "roof.sign", "taxisign", "1.0", "speed"),
        command_entity(GATEWAY, "roof.sign", "taxisign", "1.0", "state", boolean=True),
        command_entity(GATEWAY, "roof.sign", "taxisign", "1.0", "text", boolean=False),
    ]
    assert configs(signals) == {
        "homeassistant/sensor/gw_2e1/res-roof_2esign-data-speed/config": {
            **common("sghost-gw_2e1-res-roof_2esign-data-speed", ROOF_DEVICE, BOTH),
            "name": "speed", "state_topic": "data/roof.sign/speed",
        },
        "homeassistant/switch/gw_2e1/res-roof_2esign-command-state/config": {
            **common("sghost-gw_2e1-res-roof_2esign-command-state", ROOF_DEVICE, BOTH),
            "name": "state", "command_topic": "command/roof.sign/state", "state_topic": "data/roof.sign/state",
            "payload_on": "True", "payload_off": "False",
        },
        "homeassistant/text/gw_2e1/res-roof_2esign-command-text/config": {
            **common("sghost-gw_2e1-res-roof_2esign-command-text", ROOF_DEVICE, BOTH),
            "name": "text", "command_topic": "command/roof.sign/text", "state_topic": "data/roof.sign/text",
        },
    }


# ---------------------------------------------------------------------------
# A real host on a real broker

RESOURCES = """
[resources."roof.sign"]
type = "echoer"
[resources.roof_sign]
type = "counter"
settings = { interval = 0.2 }
[resources.stuck]
type = "hanger"
"""
DISCOVERY = '[homeassistant]\ndiscovery = true\nprefix = "ha"\n'


def configs_seen(recorder: Recorder) -> dict[str, dict | None]:
    """The last config on each discovery topic: its JSON, or None once removed (empty payload)."""
    last: dict[str, dict | None] = {}
    for message in list(recorder.messages):
        if message.topic.endswith("/config"):
            last[message.topic] = json.loads(message.payload) if message.payload else None
    return last


def check_rules(topic: str, payload: dict) -> None:
    """What Home Assistant requires of every discovery message."""
    match = TOPIC.fullmatch(topic)
    assert match and match["prefix"] == "ha" and match["component"] in COMPONENTS, topic
    assert ID.fullmatch(match["node"]) and ID.fullmatch(match["object"]), topic
    assert ID.fullmatch(payload["unique_id"]), payload
    assert payload["device"]["identifiers"] and payload["device"]["name"]
    assert payload["origin"]["name"] == "sghost" and payload["origin"]["sw_version"] == __version__
    assert payload["availability_mode"] == "all"
    for entry in payload["availability"]:
        assert set(entry) == {"topic", "payload_available", "payload_not_available"}
        assert (entry["payload_available"], entry["payload_not_available"]) == ("True", "False")
    if match["component"] in ("button", "switch", "text"):
        assert payload["command_topic"].startswith("command/")


def expected_topics() -> set[str]:
    base = "ha/{}/sghost/{}/config"
    topics = {base.format("sensor", "host-cpu"), base.format("sensor", "host-memory")}
    for resource in ("roof_2esign", "roof_5fsign", "stuck"):
        topics.add(base.format("binary_sensor", f"res-{resource}-running"))
        topics |= {base.format("sensor", f"res-{resource}-{key}") for key in ("state", "restarts", "cpu", "memory",
                                                                               "error")}
        topics.add(base.format("button", f"res-{resource}-restart"))
    topics.add(base.format("switch", "res-roof_2esign-command-ping"))
    topics.add(base.format("sensor", "res-roof_5fsign-data-count"))
    topics.add(base.format("text", "res-stuck-command-hang"))  # no default: offered as text after a while
    return topics


def test_a_host_publishes_removes_and_republishes_its_discovery(
    mosquitto, mqtt_recorder, host_factory, tmp_path: Path
) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto, ["ha/#", "data/#", "resourceavailable/#"])
    host = host_factory(manifest_text(mosquitto, RESOURCES + DISCOVERY, host_extra="remote_control = true"))
    wanted = expected_topics()

    def complete() -> bool:
        seen = configs_seen(recorder)
        return all(seen.get(topic) for topic in wanted)

    assert recorder.wait_until(complete, timeout=15), (sorted(wanted - set(configs_seen(recorder))), host.log())
    seen = configs_seen(recorder)
    assert {topic for topic, payload in seen.items() if payload} == wanted
    for topic, payload in seen.items():
        check_rules(topic, payload)
        assert all(m.qos == 1 for m in recorder.on(topic)), topic
    ping = seen["ha/switch/sghost/res-roof_2esign-command-ping/config"]
    assert ping["command_topic"] == "command/roof.sign/ping" and ping["payload_on"] == "True"
    assert ping["availability"][0]["topic"] == "resourceavailable/roof.sign/presence"
    count = seen["ha/sensor/sghost/res-roof_5fsign-data-count/config"]
    assert count["state_topic"] == "data/roof_sign/count"
    assert count["device"]["identifiers"] == ["sghost-sghost-res-roof_5fsign"]

    # Retained: a client that comes later (Home Assistant after a restart) gets them all.
    late = mqtt_recorder(mosquitto, "ha/#")
    assert late.wait_until(lambda: wanted <= {m.topic for m in late.messages if m.retain and m.payload}, timeout=5)

    # Home Assistant's birth message: everything is published again.
    birth = max(m.at for m in recorder.messages)
    recorder.publish("ha/status", "online")
    assert recorder.wait_until(
        lambda: wanted <= {m.topic for m in recorder.messages if m.at > birth and m.payload}, timeout=5
    ), host.log()

    # The restart button restarts the resource through remote control.
    first = resource_pid(recorder, "sghost", "roof.sign")
    button = seen["ha/button/sghost/res-roof_2esign-restart/config"]
    pressed = max(m.at for m in recorder.messages)
    recorder.publish(button["command_topic"], button["payload_press"])
    resource_pid(recorder, "sghost", "roof.sign", other_than=first)

    # An announcement that goes False (the process ended) removes that signal's config; it comes back.
    switch = "ha/switch/sghost/res-roof_2esign-command-ping/config"

    def removed_then_back(after: float) -> bool:
        removed = next((m.at for m in recorder.on(switch) if m.at > after and not m.payload), None)
        return removed is not None and any(m.payload for m in recorder.on(switch) if m.at > removed)

    assert recorder.wait_until(lambda: removed_then_back(pressed), timeout=10), host.log()
    recorder.wait_for("data/sghost/roof.sign_state", "running", timeout=10, after=pressed)
    now = max(m.at for m in recorder.messages)
    os.kill(resource_pid(recorder, "sghost", "roof.sign"), signal.SIGKILL)
    assert recorder.wait_until(lambda: removed_then_back(now), timeout=10), host.log()

    # A resource that leaves the manifest: every config of its device is removed, the others stay.
    manifest = host.manifest
    manifest.write_text(manifest.read_text().replace('[resources.roof_sign]\ntype = "counter"\n', "").replace(
        "settings = { interval = 0.2 }\n", ""))
    now = max(m.at for m in recorder.messages)
    result = run_cli("reload", "-c", str(manifest))
    assert result.returncode == 0, result.stderr
    gone = {topic for topic in wanted if "res-roof_5fsign-" in topic}
    assert len(gone) == 8
    assert recorder.wait_until(
        lambda: gone <= {m.topic for m in recorder.messages if m.at > now and m.payload == ""},
        timeout=10,
    ), host.log()
    final = mqtt_recorder(mosquitto, "ha/#")
    assert final.wait_until(lambda: wanted - gone <= {m.topic for m in final.messages if m.payload}, timeout=5)
    assert not gone & {m.topic for m in final.messages if m.payload}


def test_discovery_is_off_unless_asked_and_stale_configs_are_cleared(
    mosquitto, mqtt_recorder, host_factory
) -> None:
    # A config left retained by an earlier run, for a resource this manifest no longer has.
    stale = "ha/sensor/quiet/res-old-state/config"
    writer = mqtt_recorder(mosquitto, "nothing/here")
    writer.publish(stale, json.dumps({"unique_id": "sghost-quiet-res-old-state"}), retain=True)
    recorder: Recorder = mqtt_recorder(mosquitto, ["ha/+/quiet/#", "data/quiet/#"])
    host = host_factory(manifest_text(mosquitto, '[resources.alpha]\ntype = "echoer"\n', host="quiet"))
    recorder.wait_for("data/quiet/alpha_state", "running", timeout=10)
    assert [m.topic for m in recorder.messages if m.topic.startswith("ha/")] == [stale]
    host.stop()
    second = manifest_text(mosquitto, '[resources.alpha]\ntype = "echoer"\n' + DISCOVERY, host="quiet")
    # And one for a signal of a current resource that it no longer announces: kept while announcements
    # settle (its announcement would claim it), then removed.
    stale_signal = "ha/sensor/quiet/res-alpha-data-gone/config"
    writer.publish(stale_signal, json.dumps({"unique_id": "sghost-quiet-res-alpha-data-gone"}), retain=True)
    again = host_factory(second, name="second.toml")
    recorder.wait_for(stale, "", timeout=10)
    recorder.wait_for(stale_signal, "", timeout=15)
    running = recorder.wait_for("ha/binary_sensor/quiet/res-alpha-running/config", timeout=10)
    assert not retained(mosquitto, "ha/button/quiet/#"), "no remote_control, no button"  # settled: stale ones gone
    assert json.loads(running.payload)["availability"] == [
        {"topic": "resourceavailable/quiet/presence", "payload_available": "True", "payload_not_available": "False"}
    ]

    # Turned off by a reload: every config of the host is removed.
    now = max(m.at for m in recorder.messages)
    again.manifest.write_text(second.replace("discovery = true", "discovery = false"))
    assert run_cli("reload", "-c", str(again.manifest)).returncode == 0
    recorder.wait_for("ha/binary_sensor/quiet/res-alpha-running/config", "", timeout=10, after=now)
    recorder.wait_for("ha/sensor/quiet/host-cpu/config", "", timeout=10, after=now)
    leftover = retained(mosquitto, "ha/+/quiet/#")  # what a new subscriber finds, up to a marker after it
    assert not [topic for topic, payload in leftover.items() if payload], leftover


def test_manifest_problems_in_the_integration_tables(tmp_path: Path) -> None:
    manifest = tmp_path / "hostconfig.toml"
    manifest.write_text(
        '[homeassistant]\ndiscovery = "yes"\nprefix = "home/+/x"\nprefx = 1\n'
        '[hooks]\non_fatal = ["no-such-program-anywhere"]\nhook_timeout = -1\n'
        '[metrics]\ntextfile = "nowhere/sghost.prom"\n'
    )
    result = run_cli("check", "-c", str(manifest))
    assert result.returncode == 2
    for line in (
        'homeassistant.discovery: got "yes" (a string); expected true or false',
        'homeassistant.prefix: "home/+/x" is not a topic prefix; expected a topic prefix',
        'homeassistant.prefx: unknown key; did you mean "prefix"?',
        'hooks.on_fatal: program "no-such-program-anywhere" not found on PATH',
        "hooks.hook_timeout: -1 is out of range; expected a number > 0",
        f"metrics.textfile: directory not found: {tmp_path / 'nowhere'}",
    ):
        assert f"{manifest}: {line}" in result.stderr, (line, result.stderr)
