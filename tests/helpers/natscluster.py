"""Three nats-server nodes clustered with JetStream and an MQTT listener each, on loopback ports.

Every port is given explicitly (client, cluster, monitoring, MQTT), never 4222, and the
JetStream store of each node lives under the test's own directory. ``stream_replicas: 3``
keeps the MQTT streams available when one node dies.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from sghost.host.broker import LOOPBACK, free_port


def find_nats_server() -> str | None:
    return shutil.which("nats-server") or ("/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)


@dataclass
class NatsNode:
    name: str
    client_port: int
    cluster_port: int
    http_port: int
    mqtt_port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.mqtt_port}"

    def config(self, routes: list[int]) -> str:
        route_list = ", ".join(f"nats-route://{LOOPBACK}:{port}" for port in routes)
        return (
            f"server_name: {self.name}\nhost: {LOOPBACK}\nport: {self.client_port}\n"
            f"http: {LOOPBACK}:{self.http_port}\n"
            f'jetstream {{ store_dir: "{self.workdir / "jetstream"}" }}\n'
            f"cluster {{ name: sghost-test\n listen: {LOOPBACK}:{self.cluster_port}\n routes: [{route_list}] }}\n"
            f"mqtt {{ listen: {LOOPBACK}:{self.mqtt_port}\n stream_replicas: 3 }}\n"
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(5)


class NatsCluster:
    """``start()`` returns once every node's MQTT listener answers CONNECT with a CONNACK."""

    def __init__(self, workdir: Path, executable: str) -> None:
        self.executable = executable
        self.nodes = [
            NatsNode(f"n{i}", free_port(), free_port(), free_port(), free_port(), workdir / f"n{i}") for i in (1, 2, 3)
        ]

    def start(self, timeout: float = 30.0) -> NatsCluster:
        routes = [node.cluster_port for node in self.nodes]
        for node in self.nodes:
            node.workdir.mkdir(parents=True, exist_ok=True)
            config = node.workdir / "nats.conf"
            config.write_text(node.config(routes))
            log = open(node.workdir / "nats.log", "wb")  # noqa: SIM115 - the process owns it
            node.process = subprocess.Popen(
                [self.executable, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            while not mqtt_answers(node.mqtt_port):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server {node.name} gave no CONNACK on {node.address} within {timeout} s")
        return self

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
                try:
                    node.process.wait(5)
                except subprocess.TimeoutExpired:
                    node.kill()

    def meta_leader(self, timeout: float = 20.0) -> NatsNode:
        """The node that leads JetStream's meta group, from the nodes' monitoring endpoint (``/jsz``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes:
                try:
                    with urllib.request.urlopen(f"http://{LOOPBACK}:{node.http_port}/jsz", timeout=1) as answer:
                        leader = json.load(answer).get("meta_cluster", {}).get("leader")
                except (OSError, ValueError):
                    continue
                for candidate in self.nodes:
                    if candidate.name == leader and candidate.process is not None and candidate.process.poll() is None:
                        return candidate
            time.sleep(0.1)  # sleep-ok: the monitoring endpoint has no event to wait on until a leader is elected
        raise RuntimeError(f"no JetStream meta leader was elected within {timeout} s")

    def log(self, node: NatsNode) -> str:
        return (node.workdir / "nats.log").read_text(errors="replace")


def mqtt_answers(port: int, timeout: float = 2.0) -> bool:
    """Whether an MQTT 3.1.1 CONNECT to ``port`` gets a CONNACK (the listener accepts TCP long before)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    try:
        client.connect(LOOPBACK, port, keepalive=5)
    except OSError:
        time.sleep(0.1)  # sleep-ok: nothing listens yet; there is no event to wait on
        return False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            client.loop(0.1)
            if client.is_connected():
                return True
        return False
    finally:
        client.disconnect()


NATS = find_nats_server()
needs_nats = pytest.mark.skipif(NATS is None, reason="nats-server is not installed (.ci/run installs it)")
"""For the tests that run a cluster: they skip, with the reason, where there is no nats-server."""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three nats-server nodes with JetStream and MQTT, started for the test and stopped after it."""
    assert NATS is not None
    nodes = NatsCluster(tmp_path / "nats", NATS).start()
    yield nodes
    nodes.stop()
