"""Failover across broker addresses: sgframework.reconnect's policy against real brokers.

An sgframework Resource given three nats-server nodes survives the death of the JetStream meta leader;
one given a node that accepts TCP and never answers CONNECT gives it up for the next.

Threaded and loop mode both follow sgframework.reconnect's policy; this checks that the resource is
present again through another node (retained presence ``True`` after the kill, seen by a subscriber
on a surviving node). How fast is measured by bench/failover.py, not here.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from helpers.natscluster import NatsCluster, needs_nats

from sgframework import Resource
from sghost.host.broker import LOOPBACK, MosquittoBroker
from sghost.testing import Recorder

WAIT = 40.0


class LoopRunner:
    """Calls ``loop()`` of a loop-mode resource from a thread of its own until stopped."""

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while self.running:
            self.resource.loop()

    def stop(self) -> None:
        self.running = False
        self.thread.join(10)


@needs_nats
@pytest.mark.parametrize("threaded", [True, False], ids=["threaded", "loop"])
def test_a_resource_is_present_again_after_its_node_the_leader_dies(cluster: NatsCluster, threaded: bool) -> None:
    leader = cluster.meta_leader()
    survivors = [node for node in cluster.nodes if node is not leader]
    name = f"failover_{'threaded' if threaded else 'loop'}"
    watcher = Recorder(LOOPBACK, survivors[-1].mqtt_port, [f"resourceavailable/{name}/#"]).start(timeout=10)
    resource = Resource(name, [leader.address] + [node.address for node in survivors])
    resource.protocol = mqtt.MQTTv311
    resource.qos = 1
    resource.register_incoming_command("setpoint", lambda *_: None)
    runner = None
    resource.start(use_threaded_networking=threaded)
    if not threaded:
        runner = LoopRunner(resource)
        runner.thread.start()
    try:
        watcher.wait_for(f"resourceavailable/{name}/presence", "True", timeout=WAIT)
        assert resource.broker_address == ("127.0.0.1", leader.mqtt_port)

        leader.kill()
        killed = time.monotonic()
        back = watcher.wait_for(f"resourceavailable/{name}/presence", "True", timeout=WAIT, after=killed)
        assert back.payload == "True", "the resource announced itself again through a surviving node"
    finally:
        if runner is not None:
            runner.stop()
        resource.stop()
        watcher.stop()


class SilentListener:
    """A real TCP listener that accepts connections and never answers: a cluster node holding CONNECT."""

    def __init__(self) -> None:
        self.sock = socket.create_server((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.accepted.append(self.sock.accept()[0])

    def close(self) -> None:
        self.sock.close()
        for connection in self.accepted:
            connection.close()


@pytest.mark.parametrize("threaded", [True, False], ids=["threaded", "loop"])
def test_a_node_that_holds_connect_is_given_up_for_the_next(
    threaded: bool, mqtt_recorder: Any, caplog: pytest.LogCaptureFixture
) -> None:
    first, last = MosquittoBroker(), MosquittoBroker()
    first.start()
    last.start()
    holder = SilentListener()
    name = f"holder_{'threaded' if threaded else 'loop'}"
    watcher = mqtt_recorder(last, f"resourceavailable/{name}/#")
    resource = Resource(name, [f"{LOOPBACK}:{first.port}", f"{LOOPBACK}:{holder.port}", f"{LOOPBACK}:{last.port}"])
    # paho alone would wait this long for the holder's CONNACK, and the idle threaded network thread sleep
    resource.keepalive = 60
    runner = None
    try:
        resource.start(use_threaded_networking=threaded)
        if not threaded:
            runner = LoopRunner(resource)
            runner.thread.start()
        connected = mqtt_recorder(first, f"resourceavailable/{name}/#")
        connected.wait_for(f"resourceavailable/{name}/presence", "True", timeout=10)
        first.stop()
        watcher.wait_for(f"resourceavailable/{name}/presence", "True", timeout=30)
        assert holder.accepted, "the node in between was tried"
        assert resource.broker_address == (LOOPBACK, last.port)
        assert f"the broker at {LOOPBACK}:{holder.port} did not answer CONNECT within 0.5 s" in caplog.text
    finally:
        if runner is not None:
            runner.stop()
        resource.stop()
        holder.close()
        first.cleanup()
        last.cleanup()
