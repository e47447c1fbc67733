"""The embedded broker: mosquitto when installed, else amqtt, else a clear error."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from hostharness import HostProcess, manifest_text
from sghost.host.broker import BrokerError, EmbeddedBroker, find_amqtt, free_port
from sghost.testing import Recorder


def test_mosquitto_is_preferred_and_listens_on_loopback_only(tmp_path: Path) -> None:
    broker = EmbeddedBroker(free_port(), workdir=tmp_path)
    broker.start()
    try:
        assert broker.kind == "mosquitto"
        recorder = Recorder(broker.host, broker.port).start()
        recorder.publish("a/b/c", "x", retain=True)
        assert recorder.wait_for("a/b/c", "x").payload == "x"
        recorder.stop()
        assert "set_tcp_nodelay true" in (tmp_path / "mosquitto.conf").read_text()
        assert f"listener {broker.port} 127.0.0.1" in (tmp_path / "mosquitto.conf").read_text()
    finally:
        broker.stop()


@pytest.mark.skipif(find_amqtt() is None, reason="amqtt is not installed (pip install sghost[broker])")
def test_amqtt_is_the_fallback(tmp_path: Path) -> None:
    broker = EmbeddedBroker(free_port(), workdir=tmp_path, candidates=("amqtt",))
    broker.start()
    try:
        assert broker.kind == "amqtt"
        recorder = Recorder(broker.host, broker.port).start()
        recorder.publish("a/b/c", "via amqtt", retain=True)
        recorder.wait_for("a/b/c", "via amqtt")
        recorder.stop()
    finally:
        broker.stop()


def test_no_broker_installed_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match=r"install mosquitto .*'pip install sghost\[broker\]'"):
        EmbeddedBroker(free_port(), workdir=tmp_path, candidates=()).start()


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BrokerError, match=f"port {port} on 127.0.0.1 is already in use"):
            EmbeddedBroker(port, workdir=tmp_path).start()


def test_sghost_runs_its_resources_on_the_embedded_broker(tmp_path: Path) -> None:
    port = free_port()
    manifest = tmp_path / "hostconfig.toml"
    manifest.write_text(
        manifest_text(None, '[resources.sign]\ntype = "taxisign"\n', port=port, broker_extra="embedded = true\n")
    )
    host = HostProcess(manifest).start()
    try:
        host.wait_log("embedded broker (mosquitto)")
        host.wait_log("[sign] started")
        recorder = Recorder("127.0.0.1", port).start()
        recorder.wait_for("resourceavailable/sign/presence", "True", timeout=10)
        recorder.publish("command/sign/state", "True")
        recorder.wait_for("data/sign/state", "True")
        recorder.stop()
    finally:
        assert host.stop() == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # the broker went with sghost


def test_a_port_left_in_time_wait_by_the_last_run_can_be_used_again(tmp_path: Path) -> None:
    port = free_port()
    first = EmbeddedBroker(port, workdir=tmp_path / "first")
    first.start()
    recorder = Recorder(first.host, port).start()
    first.stop()  # the broker closes its side first: its socket waits in TIME_WAIT
    recorder.stop()
    second = EmbeddedBroker(port, workdir=tmp_path / "second")
    second.start()
    second.stop()


def test_a_free_port_is_not_one_an_outgoing_connection_can_take() -> None:
    """A chosen port lies below the ephemeral range, so no client's local end can take it before it is bound."""
    range_file = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if not range_file.exists():
        pytest.skip("no /proc/sys/net/ipv4/ip_local_port_range on this system")
    ephemeral_low = int(range_file.read_text().split()[0])
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == len(ports), ports
    assert all(port < ephemeral_low for port in ports), (ports, ephemeral_low)
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
