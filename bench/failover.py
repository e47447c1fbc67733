"""Benchmark broker failover on a three-node nats-server cluster (issue 16, "Failover as fast as the cluster allows").

Run: ``.venv/bin/python bench/failover.py`` (``--runs N``, ``--quick`` for one run). Needs ``nats-server``.

Each run starts three nats-server nodes on free 127.0.0.1 ports, clustered with JetStream and an
MQTT listener each (tests/helpers/natscluster.py), and connects, all with the three MQTT addresses,
the JetStream meta leader's first:

- an ``sgframework.Resource`` with threaded networking, QoS 1 and a command registered;
- the same in loop mode (``loop()`` called by a thread of its own);
- a plain paho client that moves to the next address at once (0.1 s reconnect delay, paho's
  keepalive limit on an unanswered CONNECT).

It kills the node they are connected to, the JetStream meta leader, with SIGKILL, and prints for each
client the seconds from the kill until it is back: for a Resource, presence ``True`` acknowledged by
the cluster (its connection status callback, which sgframework calls once the presence and
announcements are acknowledged) and, as ``*_seen``, when a QoS 0 subscriber on a surviving node
received its presence ``True``; for the plain client, its CONNACK. Beside them, a probe opens a new
MQTT connection to each surviving node every 50 ms and records when the first one is accepted:
the moment the cluster allows a failover. The figure to watch is "after the probe": the seconds a
client stayed away once a node accepted connections.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers.natscluster import NatsCluster, find_nats_server
from machine import describe_machine

from sgframework import Resource
from sghost.host.broker import LOOPBACK

WAIT_LIMIT = 40.0
PROBE_EVERY = 0.05


class Watch:
    """When a client was back: the first connection after ``since``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.since = float("inf")
        self.back_at: float | None = None
        self.connected = threading.Event()

    def up(self) -> None:
        now = time.monotonic()
        self.connected.set()
        if now >= self.since and self.back_at is None:
            self.back_at = now


class PlainClient:
    """Raw paho that moves to the next address at once after any failure."""

    def __init__(self, ports: list[int], watch: Watch) -> None:
        self.ports, self.index, self.watch = ports, 0, watch
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-plain", protocol=mqtt.MQTTv311)
        self.client.reconnect_delay_set(0.1, 0.1)
        self.client.on_connect = lambda _c, _u, _f, reason, _p: None if reason.is_failure else watch.up()
        self.client.on_disconnect = lambda *_: self._next()
        self.client.on_connect_fail = lambda *_: self._next()

    def start(self) -> None:
        self.client.connect_async(LOOPBACK, self.ports[0], keepalive=10)
        self.client.loop_start()

    def _next(self) -> None:
        self.index = (self.index + 1) % len(self.ports)
        self.client.connect_async(LOOPBACK, self.ports[self.index], keepalive=10)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class LoopResource:
    """An sgframework Resource in loop mode, its loop() called by a thread of its own."""

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.resource.start(use_threaded_networking=False)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            self.resource.loop()

    def stop(self) -> None:
        self.running = False
        self.thread.join(5)
        self.resource.stop()


class PresenceObserver:
    """A QoS 0 subscriber on a surviving node (no JetStream needed): when each presence ``True`` arrived."""

    def __init__(self, port: int, watches: dict[str, Watch]) -> None:
        self.watches = watches
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-observer", protocol=mqtt.MQTTv311)
        self.client.on_connect = lambda c, *_: c.subscribe("resourceavailable/+/presence", 0)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(LOOPBACK, port, keepalive=10)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise RuntimeError("the presence observer could not subscribe")

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        watch = self.watches.get(message.topic.split("/")[1])
        if watch is not None and message.payload == b"True" and not message.retain:
            watch.up()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_resource(name: str, addresses: list[str], watch: Watch) -> Resource:
    resource = Resource(name, addresses)
    resource.protocol = mqtt.MQTTv311
    resource.qos = 1
    resource.register_incoming_command("setpoint", lambda *_: None, echo=True)
    resource.on_broker_connectionstatus_info = lambda _app, connected: watch.up() if connected else None
    return resource


class Probe:
    """New MQTT connections to each node every PROBE_EVERY s; ``accepted_at`` is when the first succeeded.

    ``like_a_resource``: each connection also has a retained QoS 1 will, subscribes with QoS 1 and
    publishes a retained QoS 1 message, and succeeds once all are acknowledged (what a Resource's
    presence needs); otherwise a CONNACK accepting the connection is success.
    """

    def __init__(self, ports: list[int], like_a_resource: bool) -> None:
        self.ports = ports
        self.like_a_resource = like_a_resource
        self.accepted_at: float | None = None
        self.stopped = threading.Event()
        self.threads: list[threading.Thread] = []
        self.attempts = 0

    def start(self) -> None:
        self.threads.append(threading.Thread(target=self._run, daemon=True))
        self.threads[0].start()

    def _run(self) -> None:
        while not self.stopped.is_set() and self.accepted_at is None:
            for port in self.ports:
                self.attempts += 1
                attempt = threading.Thread(target=self._attempt, args=(port, self.attempts), daemon=True)
                attempt.start()
                self.threads.append(attempt)
            self.stopped.wait(PROBE_EVERY)

    def _attempt(self, port: int, number: int) -> None:
        client_id = f"probe-{int(self.like_a_resource)}-{number}"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        pending: set[int] = set()
        connected = threading.Event()

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                return
            connected.set()
            if self.like_a_resource:
                pending.add(client.subscribe(f"command/{client_id}/+", 1)[1] or 0)
                pending.add(client.publish(f"resourceavailable/{client_id}/presence", "True", 1, retain=True).mid)
            self._check(connected, pending)

        def on_ack(_c: Any, _u: Any, mid: int, *_: Any) -> None:
            pending.discard(mid)
            self._check(connected, pending)

        client.on_connect = on_connect
        client.on_subscribe = on_ack
        client.on_publish = on_ack
        if self.like_a_resource:
            client.will_set(f"resourceavailable/{client_id}/presence", "False", 1, retain=True)
        try:
            client.connect(LOOPBACK, port, keepalive=10)
        except OSError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self.stopped.is_set() and self.accepted_at is None:
            if client.loop(0.05) != mqtt.MQTT_ERR_SUCCESS:
                break
        client.disconnect()

    def _check(self, connected: threading.Event, pending: set[int]) -> None:
        if connected.is_set() and not pending and self.accepted_at is None:
            self.accepted_at = time.monotonic()

    def stop(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(11)


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)  # sleep-ok: a bench polling its clients' state
    return condition()


def run_once(nats: str, workdir: Path) -> dict[str, float | None]:
    cluster = NatsCluster(workdir, nats).start()
    try:
        leader = cluster.meta_leader()
        nodes = [leader] + [node for node in cluster.nodes if node is not leader]
        addresses = [node.address for node in nodes]
        watches = {name: Watch(name) for name in ("threaded", "loop", "plain")}
        seen = {name: Watch(name) for name in ("fo_threaded", "fo_loop")}
        observer = PresenceObserver(nodes[-1].mqtt_port, seen)
        threaded = make_resource("fo_threaded", addresses, watches["threaded"])
        looped = LoopResource(make_resource("fo_loop", addresses, watches["loop"]))
        plain = PlainClient([node.mqtt_port for node in nodes], watches["plain"])
        threaded.start(use_threaded_networking=True)
        looped.start()
        plain.start()
        if not all(watch.connected.wait(30) for watch in watches.values()):
            raise RuntimeError("a client could not connect to the cluster")
        if not wait_until(lambda: threaded.broker_address[1] == leader.mqtt_port
                          and looped.resource.broker_address[1] == leader.mqtt_port, 5):
            raise RuntimeError("the resources are not on the leader")
        probes = {
            "probe": Probe([node.mqtt_port for node in nodes[1:]], like_a_resource=False),
            "probe_resource": Probe([node.mqtt_port for node in nodes[1:]], like_a_resource=True),
        }
        leader.kill()
        killed = time.monotonic()
        for watch in watches.values():
            watch.since = killed
        for probe in probes.values():
            probe.start()
        for watch in seen.values():
            watch.since = killed
        wait_until(lambda: all(w.back_at is not None for w in [*watches.values(), *seen.values()])
                   and all(p.accepted_at is not None for p in probes.values()), WAIT_LIMIT)
        observer.stop()
        for probe in probes.values():
            probe.stop()
        threaded.stop()
        looped.stop()
        plain.stop()
        result: dict[str, float | None] = {
            name: None if watch.back_at is None else watch.back_at - killed for name, watch in watches.items()
        }
        for name, probe in probes.items():
            result[name] = None if probe.accepted_at is None else probe.accepted_at - killed
        for name, watch in seen.items():
            result[f"{name.removeprefix('fo_')}_seen"] = None if watch.back_at is None else watch.back_at - killed
        return result
    finally:
        cluster.stop()


def summary(values: list[float | None]) -> str:
    known = [value for value in values if value is not None]
    missing = len(values) - len(known)
    if not known:
        return "never"
    text = f"median {statistics.median(known):5.2f} s, max {max(known):5.2f} s"
    return text + (f" ({missing} runs not back within {WAIT_LIMIT:.0f} s)" if missing else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one run")
    args = parser.parse_args()
    nats = find_nats_server()
    if nats is None:
        print("bench/failover.py: nats-server is not installed; skipped")
        return
    runs = 1 if args.quick else args.runs
    logging.getLogger("sgframework").setLevel(logging.CRITICAL)  # each failed attempt logs an error: expected here
    print(describe_machine())
    print(f"failover on a three-node nats-server cluster, SIGKILL of the JetStream meta leader, {runs} runs")
    results = []
    for number in range(runs):
        with tempfile.TemporaryDirectory(prefix="sghost-failover-") as workdir:
            result = run_once(nats, Path(workdir))
        results.append(result)
        shown = ", ".join(f"{name} {'-' if value is None else f'{value:.2f} s'}" for name, value in result.items())
        print(f"  run {number + 1}: {shown}")
    print("seconds from the kill until back (probe: a plain CONNECT accepted; probe_resource: a resource's")
    print("CONNECT with will, QoS 1 subscription and retained presence all acknowledged):")
    for name in ("probe", "probe_resource", "threaded", "threaded_seen", "loop", "loop_seen", "plain"):
        print(f"  {name:14} {summary([result[name] for result in results])}")
    print("(threaded, loop: connection status True, i.e. presence and subscription acknowledged; *_seen: presence")
    print("True as a QoS 0 subscriber on a surviving node received it)")
    print("seconds a client stayed away after its probe succeeded (resources: probe_resource; plain: probe):")
    pairs = [(name, "probe_resource") for name in ("threaded", "threaded_seen", "loop", "loop_seen")]
    for name, probe in [*pairs, ("plain", "probe")]:
        lags = [
            None if result[name] is None or result[probe] is None else result[name] - result[probe]
            for result in results
        ]
        print(f"  {name:14} {summary(lags)}")


if __name__ == "__main__":
    main()
