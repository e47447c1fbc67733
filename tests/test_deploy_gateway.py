"""Fleet deployments on a real gateway: sghost with an embedded broker (and an uplink to a central mosquitto)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers.deploygateway import ADDED, CRASHER, ECHOER, HOST, VERIFY, Gateway, fleet_key, sign

from hostharness import HostProcess, manifest_text, resource_pid, run_cli
from sghost.deploy import document
from sghost.host.broker import MosquittoBroker, free_port
from sghost.testing import Recorder


@pytest.fixture
def key(tmp_path: Path) -> Ed25519PrivateKey:
    return fleet_key(tmp_path)


@pytest.fixture
def central(tmp_path: Path) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(workdir=tmp_path / "central")
    broker.start()
    yield broker
    broker.cleanup()


@pytest.fixture
def gateway(tmp_path: Path, key: Ed25519PrivateKey, host_factory: Callable[..., HostProcess],
            clients: list[Any]) -> Gateway:
    return Gateway(tmp_path, host_factory, clients)


def test_a_deployment_adds_a_resource_and_untouched_ones_keep_their_pids(gateway: Gateway, key: Any) -> None:
    gateway.start(gateway.manifest(ECHOER))
    assert gateway.local is not None
    keep_pid = resource_pid(gateway.local, HOST, "keep")
    payload, deployment_id = sign(key, gateway.manifest(ECHOER + ADDED), 10)
    gateway.push(payload)
    done = gateway.wait_state(deployment_id, "successful")
    assert [s["state"] for s in gateway.states() if s["id"] == deployment_id] == [
        "received", "installing", "applying", "verifying", "successful"]
    assert done["generation"] == 2 and done["sequence"] == 10
    assert resource_pid(gateway.local, HOST, "added") > 0
    assert resource_pid(gateway.local, HOST, "keep") == keep_pid
    assert gateway.local.on(f"data/{HOST}/deployment")[-1].retain or True
    listing = run_cli("generations", "-c", str(gateway.manifest_path), "--json")
    rows = json.loads(listing.stdout)
    assert [(r["number"], r["current"], r["state"]) for r in rows] == [
        (1, False, "successful"), (2, True, "successful")]
    text = run_cli("generations", "-c", str(gateway.manifest_path)).stdout
    assert any(line.startswith("*") and deployment_id in line for line in text.splitlines()), text
    status = run_cli("deploy", "status", "-c", str(gateway.manifest_path))
    assert f"deployment {deployment_id} (sequence 10): successful" in status.stdout, status.stdout + status.stderr

    added_pid = resource_pid(gateway.local, HOST, "added")
    reload = run_cli("reload", "-c", str(gateway.manifest_path))  # re-reads generation 2, not gw1.toml
    assert reload.returncode == 0 and "0 added, 0 removed, 0 restarted" in reload.stdout, reload.stdout + reload.stderr
    assert resource_pid(gateway.local, HOST, "added") == added_pid

    rollback = run_cli("rollback", "-c", str(gateway.manifest_path), timeout=60)
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    assert "rolling back to generation 1" in rollback.stdout and "successful" in rollback.stdout
    back = gateway.states()[-1]
    assert back["state"] == "successful" and back["generation"] == 1, back
    gateway.local.wait_for(f"data/{HOST}/added_state", "", timeout=10)  # removed again
    assert resource_pid(gateway.local, HOST, "keep") == keep_pid
    again = run_cli("rollback", "5", "-c", str(gateway.manifest_path))
    assert again.returncode == 1 and "no generation 5" in again.stderr, again.stderr


def test_a_new_resource_that_crashes_is_rolled_back(gateway: Gateway, key: Any) -> None:
    gateway.start(gateway.manifest(ECHOER))
    assert gateway.local is not None
    keep_pid = resource_pid(gateway.local, HOST, "keep")
    payload, deployment_id = sign(key, gateway.manifest(ECHOER + CRASHER), 10)
    gateway.push(payload)
    done = gateway.wait_state(deployment_id, "rolled-back", timeout=VERIFY + 15)
    assert "resource added" in done["reason"] and "boom at start" in done["reason"], done
    assert done["generation"] == 1
    gateway.local.wait_for(f"data/{HOST}/added_state", "", timeout=10)  # the added resource is forgotten
    assert resource_pid(gateway.local, HOST, "keep") == keep_pid
    rows = json.loads(run_cli("generations", "-c", str(gateway.manifest_path), "--json").stdout)
    assert [(r["number"], r["current"], r["state"]) for r in rows] == [
        (1, True, "successful"), (2, False, "rolled-back")]


def rejection_cases(gateway: Gateway, key: Any) -> dict[str, tuple[bytes, str]]:
    good = gateway.manifest(ECHOER + ADDED)
    altered, _ = sign(key, good, 20)
    return {
        "unsigned": (json.dumps({"host": HOST, "sequence": 20, "manifest": good, "requirements": [],
                                 "signature": ""}).encode(), "unsigned"),
        "another key": (sign(Ed25519PrivateKey.generate(), good, 21)[0], "does not match any trusted key"),
        "altered": (altered.replace(b'"sequence": 20', b'"sequence": 22'), "does not match any trusted key"),
        "another host": (sign(key, good, 23, host="gw2")[0], "for host 'gw2'"),
        "not newer": (sign(key, good, 1)[0], "not newer"),
        "too large": (json.dumps({"host": HOST, "sequence": 24, "manifest": good + "#" * document.MAX_DOCUMENT_BYTES,
                                  "requirements": [], "signature": "x"}).encode(), "1 MiB"),
        "invalid manifest": (sign(key, good + '[resources.bad]\ntype = "nosuchtype"\n', 25)[0],
                             "resources.bad.type"),
        "drops deploy": (sign(key, manifest_text(None, ECHOER, host=HOST, port=gateway.port,
                                                 broker_extra="embedded = true\n"), 26)[0], "lock the fleet out"),
    }


def test_every_rejection_is_counted_and_nothing_restarts(gateway: Gateway, key: Any) -> None:
    gateway.start(gateway.manifest(ECHOER))
    assert gateway.local is not None
    keep_pid = resource_pid(gateway.local, HOST, "keep")
    first, first_id = sign(key, gateway.manifest(ECHOER), 5)  # a successful one first: "not newer" than it
    gateway.push(first)
    gateway.wait_state(first_id, "successful")
    cases = rejection_cases(gateway, key)
    for count, (name, (payload, reason)) in enumerate(cases.items(), start=1):
        gateway.push(payload)
        gateway.local.wait_for(f"data/{HOST}/deploy_rejected", str(count), timeout=10)
        last = gateway.states()[-1]
        assert last["state"] == "rejected" and reason in last["reason"], (name, last)
    assert resource_pid(gateway.local, HOST, "keep") == keep_pid
    assert not gateway.local.on(f"data/{HOST}/added_pid")

    def health_count() -> object:
        health = json.loads(gateway.local.latest(f"data/{HOST}/health") or "{}")  # type: ignore[union-attr]
        return health.get("deploy_rejected") == len(cases)

    assert gateway.local.wait_until(health_count, 10)
    # The retained document comes again when the meta-resource reconnects: the barrier for "nothing more".
    gateway.push(first)
    run_cli("rebirth", "all", "-c", str(gateway.manifest_path))
    gateway.local.wait_for(f"data/{HOST}/deploy_rejected", str(len(cases)), timeout=10)
    assert gateway.states()[-1]["state"] == "rejected" and gateway.local.latest(f"data/{HOST}/deploy_rejected") == str(
        len(cases))


def test_killed_while_applying_starts_a_consistent_generation_and_says_which(gateway: Gateway, key: Any) -> None:
    gateway.start(gateway.manifest(ECHOER))
    assert gateway.local is not None and gateway.host is not None
    payload, deployment_id = sign(key, gateway.manifest(ECHOER + ADDED, verify=60), 10)
    gateway.push(payload)
    gateway.wait_state(deployment_id, "verifying")
    gateway.kill_and_start_again()
    assert gateway.local is not None
    gateway.local.wait_until(lambda: any("restarted while deploying generation 2" in s["reason"]
                                         for s in gateway.states() if s["state"] == "verifying"), 15)
    resumed = [s for s in gateway.states() if s["id"] == deployment_id and s["state"] == "verifying"][-1]
    assert "restarted while deploying generation 2" in resumed["reason"] and resumed["generation"] == 2, resumed
    gateway.host.wait_log("starting generation 2", timeout=5)
    assert resource_pid(gateway.local, HOST, "added") > 0  # the generation switched to runs whole
    rows = json.loads(run_cli("generations", "-c", str(gateway.manifest_path), "--json").stdout)
    assert [(r["number"], r["current"]) for r in rows] == [(1, False), (2, True)]


@pytest.fixture
def uplinked(tmp_path: Path, key: Ed25519PrivateKey, host_factory: Callable[..., HostProcess], clients: list[Any],
             central: MosquittoBroker) -> Gateway:
    return Gateway(tmp_path, host_factory, clients, central)


def central_states(recorder: Recorder, deployment_id: str) -> list[str]:
    return [json.loads(m.payload)["state"] for m in recorder.on(f"gateways/{HOST}/data/{HOST}/deployment")
            if m.payload and json.loads(m.payload)["id"] == deployment_id]


def test_pushed_while_the_gateway_is_offline_it_is_applied_when_the_uplink_is_back(
    uplinked: Gateway, key: Any, central: MosquittoBroker, clients: list[Any]
) -> None:
    uplinked.start(uplinked.manifest(ECHOER))
    assert uplinked.host is not None
    uplinked.host.wait_log("uplink connected", timeout=15)
    uplinked.host.stop()
    payload, deployment_id = sign(key, uplinked.manifest(ECHOER + ADDED), 10)
    operator = Recorder(central.host, central.port, f"gateways/{HOST}/#").start()
    clients.append(operator)
    operator.publish(f"gateways/{HOST}/command/{HOST}/deploy", payload, qos=1, retain=True)
    uplinked.start()
    operator.wait_until(lambda: "successful" in central_states(operator, deployment_id), 30)
    assert central_states(operator, deployment_id)[-1] == "successful", central_states(operator, deployment_id)
    operator.wait_for(f"gateways/{HOST}/resourceavailable/added/presence", "True", timeout=10)


def test_a_wrong_uplink_address_is_rolled_back_and_central_sees_it(
    uplinked: Gateway, key: Any, central: MosquittoBroker, clients: list[Any]
) -> None:
    uplinked.start(uplinked.manifest(ECHOER))
    assert uplinked.host is not None and uplinked.local is not None
    uplinked.host.wait_log("uplink connected", timeout=15)
    keep_pid = resource_pid(uplinked.local, HOST, "keep")
    operator = Recorder(central.host, central.port, f"gateways/{HOST}/#").start()
    clients.append(operator)
    payload, deployment_id = sign(key, uplinked.manifest(ECHOER, uplink=f"127.0.0.1:{free_port()}"), 10)
    operator.publish(f"gateways/{HOST}/command/{HOST}/deploy", payload, qos=1, retain=True)
    operator.wait_until(lambda: "rolled-back" in central_states(operator, deployment_id), VERIFY + 30)
    states = central_states(operator, deployment_id)
    assert states[-1] == "rolled-back", states
    last = json.loads(operator.latest(f"gateways/{HOST}/data/{HOST}/deployment") or "{}")
    assert "uplink" in last["reason"] and last["generation"] == 1, last
    assert resource_pid(uplinked.local, HOST, "keep") == keep_pid


def test_killed_while_installing_runs_the_previous_generation_and_reports_the_deployment_failed(
    gateway: Gateway, key: Any
) -> None:
    """pip waits on an index that accepts connections and never answers: sghost is killed meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        index = f'index_url = "http://127.0.0.1:{silent.getsockname()[1]}/simple"\n'
        gateway.start(gateway.manifest(ECHOER, deploy_extra=index))
        assert gateway.local is not None and gateway.host is not None
        requirement = "sghost-demo==0.1 --hash=sha256:" + "0" * 64
        payload, deployment_id = sign(key, gateway.manifest(ECHOER + ADDED, deploy_extra=index), 10,
                                      requirements=[requirement])
        gateway.push(payload)
        gateway.wait_state(deployment_id, "installing")
        gateway.kill_and_start_again()
        failed = gateway.wait_state(deployment_id, "failed")
        assert "stopped while installing generation 2; generation 1 runs" in failed["reason"], failed
        assert failed["generation"] == 1
        assert resource_pid(gateway.local, HOST, "keep") > 0
        rows = json.loads(run_cli("generations", "-c", str(gateway.manifest_path), "--json").stdout)
        assert [(r["number"], r["current"]) for r in rows] == [(1, True)]  # the half-installed one is gone
        # The retained document is delivered again at the new connection: not tried again (it could kill sghost
        # again). Barrier: a newer deployment through the same topic is taken, and nothing came in between.
        newer, newer_id = sign(key, gateway.manifest(ECHOER, deploy_extra=index), 11)
        gateway.push(newer)
        gateway.wait_state(newer_id, "successful")
        assert [s["state"] for s in gateway.states() if s["id"] == deployment_id] == ["failed"]


@pytest.mark.parametrize("enabled", [True, False])
def test_the_deploy_command_is_offered_only_with_deploy_enabled(
    gateway: Gateway, host_factory: Callable[..., HostProcess], clients: list[Any], enabled: bool
) -> None:
    text = gateway.manifest(ECHOER).replace("enabled = true", f"enabled = {'true' if enabled else 'false'}")
    text = text.replace("[host]\n", "[host]\nremote_control = true\n")
    host_factory(text, name="gw1.toml").wait_log("embedded broker (mosquitto)", timeout=15)
    health = Recorder("127.0.0.1", gateway.port, f"data/{HOST}/health").start()
    clients.append(health)
    health.wait_for(f"data/{HOST}/health", timeout=10)  # published after the meta-resource's announcements
    # One subscription, deploy's topic first: its retained announcement would come before restart's.
    topics = [f"commandavailable/{HOST}/deploy", f"commandavailable/{HOST}/restart"]
    watcher = Recorder("127.0.0.1", gateway.port, topics).start()
    clients.append(watcher)
    watcher.wait_for(f"commandavailable/{HOST}/restart", "True", timeout=10)
    assert (watcher.latest(f"commandavailable/{HOST}/deploy") == "True") is enabled


def test_a_rollout_that_fails_on_its_first_gateway_never_changes_the_others(
    tmp_path: Path, key: Ed25519PrivateKey, central: MosquittoBroker, host_factory: Callable[..., HostProcess],
    clients: list[Any],
) -> None:
    gateways = {name: Gateway(tmp_path, host_factory, clients, central, name=name) for name in ("gw1", "gw2", "gw3")}
    for gateway in gateways.values():
        gateway.start(gateway.manifest(ECHOER))
        assert gateway.host is not None
        gateway.host.wait_log("uplink connected", timeout=15)
    pids = {name: resource_pid(gateway.local, name, "keep") for name, gateway in gateways.items()}
    key_file = tmp_path / "fleet.key"
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key_file.chmod(0o600)
    template = tmp_path / "template.toml"  # valid for gw1, the only one it reaches: a new resource that crashes
    template.write_text(gateways["gw1"].manifest(ECHOER + CRASHER).replace("gw1", "{host}"))

    result = run_cli(
        "deploy", "rollout", "--key", str(key_file), "--hosts", "gw1,gw2,gw3", "--prefix-template",
        "gateways/{host}/", "--batch", "1", "--max-failed", "0", "--broker", f"127.0.0.1:{central.port}",
        "--timeout", "60", str(template), timeout=90,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    rows = {cells[0]: line for line in result.stdout.splitlines() if (cells := line.split()) and cells[0] in gateways}
    assert "rolled-back" in rows["gw1"], result.stdout
    assert "not started" in rows["gw2"] and "not started" in rows["gw3"], result.stdout
    late = Recorder(central.host, central.port, ["gateways/+/command/+/deploy", "gateways/late/barrier"]).start()
    clients.append(late)
    late.publish("gateways/late/barrier", "barrier")
    late.wait_for("gateways/late/barrier", "barrier")
    assert [m.topic for m in late.messages if m.topic.endswith("/deploy")] == ["gateways/gw1/command/gw1/deploy"]
    for name in ("gw2", "gw3"):
        assert resource_pid(gateways[name].local, name, "keep") == pids[name]
        listed = run_cli("generations", "--json", "-c", str(gateways[name].manifest_path))
        assert listed.returncode == 0, listed.stderr  # only the generation it started from: no deployment
        assert [(row["number"], row["id"]) for row in json.loads(listed.stdout)] == [(1, None)], listed.stdout
    assert resource_pid(gateways["gw1"].local, "gw1", "keep") == pids["gw1"]
