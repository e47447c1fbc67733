"""The uplink: sghost's embedded broker bridged, with persistence, to a second mosquitto ("central")."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.certs import make_tls_files

from hostharness import HostProcess, manifest_text, run_cli
from sghost.host.broker import MosquittoBroker, free_port
from sghost.testing import Recorder

OUTAGE_MESSAGES = 1000
"""Central stays down until gateway a has sent this many messages (20 s at 50 msg/s)."""
"""Seconds central stays down: the issue's outage, long enough for mosquitto's default queue to overflow."""


@pytest.fixture
def central(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """The central broker, with persistence so a persistent subscriber's session survives its restart."""
    workdir = tmp_path / "central"
    broker = MosquittoBroker(
        extra_config=["persistence true", f"persistence_location {workdir}/", "max_queued_messages 0"],
        workdir=workdir,
    )
    broker.start()
    yield broker
    broker.cleanup()


def gateway_manifest(tmp_path: Path, name: str, central: MosquittoBroker, resources: str, extra: str = "") -> str:
    port = free_port()
    text = manifest_text(None, resources, host=name, port=port, broker_extra="embedded = true\n")
    return text + (
        f'\n[uplink]\naddress = "127.0.0.1:{central.port}"\nstate_dir = "{tmp_path / ("state-" + name)}"\n'
        f"reconnect_min = 1\nreconnect_max = 2\n{extra}"
    )


def local_port(text: str) -> int:
    return int(text.split("[broker]")[1].split("port = ")[1].split("\n")[0])


COUNTER = '[resources.stream]\ntype = "counter"\nsettings = { interval = 0.02 }\n'


def counts(recorder: Recorder, topic: str) -> list[int]:
    return [int(m.payload) for m in recorder.on(topic) if m.payload.isdigit()]


def first_occurrences(values: list[int]) -> list[int]:
    """QoS 1 is at least once: a re-sent duplicate is allowed, a gap or a reordering is not."""
    seen: set[int] = set()
    kept = []
    for value in values:
        if value not in seen:
            seen.add(value)
            kept.append(value)
    return kept


def test_outage_of_central_loses_nothing_also_across_a_restart_of_sghost(
    tmp_path: Path, central: MosquittoBroker, host_factory: Callable[..., HostProcess]
) -> None:
    """Two gateways with a resource of the same name stream QoS 1 data at 50 msg/s each. Central is down while
    gateway a sends 1,000 (about 20 s); gateway b's sghost is stopped and started during that time. Every message
    reaches the persistent central subscriber, in order, under each gateway's own prefix; the uplink state goes
    disconnected and back."""
    subscriber = Recorder(central.host, central.port, "gateways/#", client_id="central-sub", clean_session=False)
    subscriber.start()
    texts = {name: gateway_manifest(tmp_path, name, central, COUNTER) for name in ("gwa", "gwb")}
    hosts = {name: host_factory(text, name=f"{name}.toml") for name, text in texts.items()}
    local = {name: Recorder("127.0.0.1", local_port(text), ["data/#"]) for name, text in texts.items()}
    for name, host in hosts.items():
        host.wait_log("embedded broker (mosquitto)", timeout=15)
        local[name].start()
    remote = {name: f"gateways/{name}/data/stream/count" for name in hosts}
    for name in hosts:
        subscriber.wait_for(f"gateways/{name}/data/{name}/uplink", "connected", timeout=15)
        assert subscriber.wait_until(lambda n=name: len(counts(subscriber, remote[n])) >= 20, 10), name

    central.stop()
    outage_started, outage_wall_clock = time.monotonic(), time.time()
    before_outage = max(counts(local["gwa"], "data/stream/count"))
    for name in hosts:
        local[name].wait_for(f"data/{name}/uplink", "disconnected", timeout=10, after=outage_started)
    hosts["gwb"].stop()
    sent_by_first_b = max(counts(local["gwb"], "data/stream/count"))
    local["gwb"].stop()
    hosts["gwb"] = host_factory(texts["gwb"], name="gwb.toml")
    hosts["gwb"].wait_log("embedded broker (mosquitto)", timeout=15)
    local["gwb"] = Recorder("127.0.0.1", local_port(texts["gwb"]), ["data/#"]).start()
    assert local["gwb"].wait_until(lambda: counts(local["gwb"], "data/stream/count"), 10)
    assert local["gwa"].wait_until(
        lambda: max(counts(local["gwa"], "data/stream/count")) >= before_outage + OUTAGE_MESSAGES, 60
    ), f"gwa did not send {OUTAGE_MESSAGES} messages during the outage"
    central.start()
    reconnected = time.monotonic()

    for name in hosts:
        local[name].wait_for(f"data/{name}/uplink", "connected", timeout=15, after=reconnected)
        target = max(counts(local[name], "data/stream/count"))
        arrived = subscriber.wait_until(lambda n=name, t=target: t in counts(subscriber, remote[n]), 30)
        assert arrived, f"{name}: {target} not at central; last there {counts(subscriber, remote[name])[-3:]}"
        subscriber.wait_for(f"gateways/{name}/data/{name}/uplink", "connected", timeout=10, after=reconnected)

    gwa = first_occurrences(counts(subscriber, remote["gwa"]))
    assert gwa == list(range(1, len(gwa) + 1)), "gwa: a gap or reordering at central"
    assert len(gwa) >= before_outage + OUTAGE_MESSAGES, "gwa: what it sent during the outage did not all arrive"
    b_values = counts(subscriber, remote["gwb"])
    restart_at = next(i for i, value in enumerate(b_values) if value == 1 and i > 0)
    first_run, second_run = first_occurrences(b_values[:restart_at]), first_occurrences(b_values[restart_at:])
    assert first_run == list(range(1, sent_by_first_b + 1)), "gwb: what the stopped sghost queued did not all arrive"
    assert second_run == list(range(1, len(second_run) + 1)), "gwb after its restart: a gap or reordering"
    assert not subscriber.on("gateways/gwa/data/gwb/uplink") and not subscriber.on("gateways/gwb/data/gwa/uplink")

    def uplink_health() -> dict[str, object]:
        return json.loads(local["gwa"].latest("data/gwa/health") or "{}").get("uplink") or {}

    local["gwa"].wait_until(lambda: uplink_health().get("state") == "connected", 10)
    assert uplink_health()["state"] == "connected", uplink_health()
    assert uplink_health()["dropped"] == 0
    assert int(uplink_health()["since"]) >= int(outage_wall_clock), "since: the reconnection after the outage"  # type: ignore[call-overload]
    for recorder in (*local.values(), subscriber):
        recorder.stop()


def test_commands_from_central_reach_the_resource_and_the_fleet_view_lists_every_gateway(
    tmp_path: Path, central: MosquittoBroker, host_factory: Callable[..., HostProcess]
) -> None:
    echoer = '[resources.sign]\ntype = "echoer"\n'
    for name in ("gwa", "gwb"):
        host_factory(gateway_manifest(tmp_path, name, central, echoer), name=f"{name}.toml")
    subscriber = Recorder(central.host, central.port, "gateways/#").start()
    for name in ("gwa", "gwb"):
        subscriber.wait_for(f"gateways/{name}/data/{name}/uplink", "connected", timeout=15)
        subscriber.wait_for(f"gateways/{name}/resourceavailable/sign/presence", "True", timeout=15)

    status = run_cli("status", "-c", str(tmp_path / "gwa.toml"))
    assert status.returncode == 0, status.stderr
    assert "uplink connected since" in status.stdout and "dropped 0" in status.stdout, status.stdout

    subscriber.publish("gateways/gwa/command/sign/ping", "hello")
    subscriber.wait_for("gateways/gwa/data/sign/ping", "hello", timeout=10)
    assert subscriber.latest("gateways/gwb/data/sign/ping") in (None, "False")  # gwb's sign was not commanded

    fleet = run_cli("status", "--all", "--broker", f"127.0.0.1:{central.port}", "--prefix", "gateways/+/")
    assert fleet.returncode == 0, fleet.stderr
    assert "gwa" in fleet.stdout and "gwb" in fleet.stdout, fleet.stdout
    assert fleet.stdout.count("sign") >= 2, fleet.stdout
    subscriber.stop()


def test_messages_dropped_at_the_queue_bound_are_counted_and_logged(
    tmp_path: Path, central: MosquittoBroker, host_factory: Callable[..., HostProcess]
) -> None:
    text = gateway_manifest(tmp_path, "gwd", central, COUNTER, "max_queued_messages = 20\n")
    host = host_factory(text, name="gwd.toml")
    host.wait_log("uplink connected", timeout=15)
    local = Recorder("127.0.0.1", local_port(text), ["data/gwd/#"]).start()
    central.stop()
    local.wait_for("data/gwd/uplink", "disconnected", timeout=10)

    def uplink_health() -> dict[str, object]:
        return json.loads(local.latest("data/gwd/health") or "{}").get("uplink") or {}

    assert local.wait_until(lambda: int(uplink_health().get("dropped") or 0) > 0, 15), uplink_health()  # type: ignore[call-overload]
    assert "state" in uplink_health() and uplink_health()["state"] == "disconnected"
    host.wait_log("uplink: the embedded broker has dropped", timeout=5)
    status = run_cli("status", "-c", str(tmp_path / "gwd.toml"))
    assert "uplink disconnected" in status.stdout and "dropped 0" not in status.stdout, status.stdout
    local.stop()


def test_uplink_over_tls_with_a_client_certificate(tmp_path: Path, host_factory: Callable[..., HostProcess]) -> None:
    files = make_tls_files(tmp_path / "tls")
    central = MosquittoBroker(extra_config=files.broker_config(), workdir=tmp_path / "central-tls")
    central.start()
    try:
        text = gateway_manifest(
            tmp_path, "gwt", central, '[resources.sign]\ntype = "echoer"\n',
            f'certificate_directory = "{files.client_dir}"\n',
        )
        host_factory(text, name="gwt.toml")
        subscriber = Recorder(central.host, central.port, "gateways/#", certificate_directory=files.client_dir).start()
        subscriber.wait_for("gateways/gwt/resourceavailable/sign/presence", "True", timeout=15)
        subscriber.wait_for("gateways/gwt/data/gwt/uplink", "connected", timeout=10)
        subscriber.stop()
    finally:
        central.cleanup()
