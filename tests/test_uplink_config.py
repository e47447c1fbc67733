"""``[uplink]``, ``[broker] host`` lists and ``[broker] kind``: what the manifest accepts, what it refuses and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostharness import run_cli
from sgframework import App, Resource
from sgframework.addresses import broker_addresses, parse_address
from sghost.config.manifest import ManifestError, load_manifest
from sghost.config.reloadplan import plan_reload
from sghost.config.uplink import DEFAULT_MAX_QUEUED_MESSAGES, default_state_dir
from sghost.host import uplinkbridge

EMBEDDED = '[host]\nname = "gw1"\n[broker]\nembedded = true\nport = 18999\n'


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "hostconfig.toml"
    path.write_text(text)
    return load_manifest(path)


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ManifestError) as caught:
        load(tmp_path, text)
    return str(caught.value)


def test_uplink_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, EMBEDDED + '[uplink]\naddress = "central.example.com"\n')
    uplink = config.uplink  # type: ignore[attr-defined]
    assert uplink.addresses == (("central.example.com", 8883),)
    assert uplink.remote_prefix == "gateways/gw1/"
    assert uplink.state_dir == default_state_dir("gw1")
    assert uplink.max_queued_messages >= 10 * 60 * 100 == 60_000
    assert uplink.incoming == ("command/#",)


def test_uplink_problems_are_named(tmp_path: Path) -> None:
    text = (
        '[host]\nname = "gw1"\n[broker]\nport = 18999\n'
        '[uplink]\naddress = ["a:1", "b:99999"]\nremote_prefix = "gateways/#"\nmax_queued_messages = 0\n'
        'topics_out = ["data/#/x"]\nkeepalive = "x"\npassword_file = "missing"\n'
    )
    found = problems(tmp_path, text)
    assert "uplink: needs [broker] embedded = true" in found
    assert "uplink.address: The port of broker address 'b:99999' must be a whole number from 1 to 65535" in found
    assert 'uplink.remote_prefix: "gateways/#" is not a topic prefix' in found
    assert "uplink.max_queued_messages: 0 is out of range" in found
    assert 'uplink.topics_out: "data/#/x" is not a topic filter' in found
    assert 'uplink.keepalive: got "x" (a string)' in found
    assert "uplink.password_file: file not found" in found
    assert "uplink.password_file: set without uplink.username" in found
    assert problems(tmp_path, EMBEDDED + "[uplink]\nkeepalive = 30\n").endswith(
        'uplink: missing key "address"; expected address = "central.example.com:8883"'
    )
    assert "uplink.adress: unknown key; did you mean" in problems(tmp_path, EMBEDDED + '[uplink]\nadress = "a"\n')


def test_bridge_configuration(tmp_path: Path) -> None:
    text = EMBEDDED + (
        f'[uplink]\naddress = ["c1:8883", "c2:1884"]\nstate_dir = "{tmp_path}/state"\ncommands_in = false\n'
        'remote_prefix = "site/7/"\n'
    )
    uplink = load(tmp_path, text).uplink  # type: ignore[attr-defined]
    lines = uplinkbridge.config_lines(uplink, "gw1")
    assert "address c1:8883 c2:1884" in lines
    assert 'topic data/# out 1 "" site/7/' in lines
    assert not [line for line in lines if line.startswith("topic") and " in " in line]  # commands_in = false
    assert f"max_queued_messages {DEFAULT_MAX_QUEUED_MESSAGES}" in lines
    assert f"persistence_location {tmp_path}/state/" in lines
    assert (tmp_path / "state").is_dir()


def test_broker_host_list_and_nats_kind(tmp_path: Path) -> None:
    config = load(tmp_path, '[broker]\nhost = ["n1:1884", "n2"]\nport = 1890\nkind = "nats"\n')
    assert config.broker.host == ("n1:1884", "n2")  # type: ignore[attr-defined]
    assert broker_addresses(list(config.broker.host), config.broker.port) == [("n1", 1884), ("n2", 1890)]  # type: ignore[attr-defined]
    found = problems(
        tmp_path,
        '[host]\nname = "gw.1"\n[broker]\nkind = "nats"\nqos = 2\nprotocol = "MQTTv5"\n'
        '[resources."taxi sign"]\ntype = "taxisign"\n',
    )
    assert 'broker.qos: 2 with kind = "nats"; expected 0 or 1' in found
    assert 'broker.protocol: "MQTTv5" with kind = "nats"; expected "MQTTv311"' in found
    assert "host.name: \"gw.1\" contains '.', which nats-server does not accept in a topic" in found
    assert "resources.\"taxi sign\": the resource name contains ' '" in found
    assert "broker.host" in problems(tmp_path, '[broker]\nhost = ["a:1"]\nembedded = true\n')
    assert "broker.kind" in problems(tmp_path, '[broker]\nkind = "nat"\n')


def test_sghost_check_refuses_what_nats_cannot_carry(tmp_path: Path) -> None:
    path = tmp_path / "hostconfig.toml"
    path.write_text('[host]\nname = "gw.1"\n[broker]\nkind = "nats"\n')
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 2
    assert "host.name" in result.stdout + result.stderr and "nats-server" in result.stdout + result.stderr


def test_addresses_in_sgframework() -> None:
    assert parse_address("[::1]:1884", 1) == ("::1", 1884)
    assert parse_address("host", 1883) == ("host", 1883)
    for bad in ("", ":1884", "h:x", "[::1]x"):
        with pytest.raises(ValueError):
            parse_address(bad, 1883)
    assert App("a", "localhost", 1890).broker_address == ("localhost", 1890)  # a string keeps its meaning
    assert Resource("r", ["n1:1", "n2:2"]).broker_address == ("n1", 1)
    with pytest.raises(ValueError, match="empty"):
        App("a", [])
    with pytest.raises(ValueError, match="'n1:x'"):
        Resource("r", ["n1:x"])


def test_an_unencrypted_uplink_to_another_machine_is_warned_about(tmp_path: Path) -> None:
    config = load(tmp_path, EMBEDDED + '[uplink]\naddress = "central.example.com:1883"\n')
    assert any("uplink.certificate_directory: unset" in line for line in config.warnings)  # type: ignore[attr-defined]
    assert not load(tmp_path, EMBEDDED + '[uplink]\naddress = "127.0.0.1:1884"\n').warnings  # type: ignore[attr-defined]


def test_status_all_refuses_a_bad_prefix() -> None:
    result = run_cli("status", "--all", "--broker", "127.0.0.1:1", "--prefix", "gateways/#")
    assert result.returncode == 2
    assert "--prefix 'gateways/#': expected topic levels ending in '/'" in result.stderr
    result = run_cli("status", "--prefix", "gateways/+/")
    assert result.returncode == 2 and "--prefix needs --all" in result.stderr


def test_a_changed_uplink_waits_for_the_next_start(tmp_path: Path) -> None:
    running = load(tmp_path, EMBEDDED + '[uplink]\naddress = "127.0.0.1:1884"\n')
    new = load(tmp_path, EMBEDDED + '[uplink]\naddress = "127.0.0.1:1885"\n')
    plan = plan_reload(running, new, {})  # type: ignore[arg-type]
    assert plan.config.uplink == running.uplink  # type: ignore[attr-defined]
    assert any(line.startswith("[uplink]") and "next start" in line for line in plan.deferred)
