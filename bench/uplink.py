"""Benchmark the uplink: the embedded broker bridged to a central mosquitto (issue 9).

Run: ``.venv/bin/python bench/uplink.py`` (``--quick`` for a smoke run). Two private
mosquittos on free 127.0.0.1 ports: "central", and a "gateway" broker started with
exactly the configuration sghost's ``[uplink]`` gives the embedded broker
(:func:`sghost.host.uplinkbridge.config_lines`). It prints:

- QoS 1 messages per second from an ``sgframework.Resource`` to a central
  subscriber, through the uplink and with the resource connected to central directly;
- the time to drain 10,000 messages queued during an outage, from central's restart
  to the last one at a persistent central subscriber (includes the bridge's reconnect
  delay, ``reconnect_min = 1``);
- the extra memory of the uplink: the gateway broker's RSS with and without the
  bridge, idle and holding the 10,000 queued messages.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine

from sgframework import Resource
from sghost.config.uplink import UplinkConfig
from sghost.host import uplinkbridge
from sghost.host.broker import MosquittoBroker

TOPIC = "data/bench/value"


class Counter:
    """A raw paho subscriber counting messages on ``pattern``; persistent when given a client id."""

    def __init__(self, port: int, pattern: str, client_id: str = "") -> None:
        self.count = 0
        self.last_at = 0.0
        self.done = threading.Event()
        self.target = 0
        self.pattern = pattern
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not client_id, protocol=mqtt.MQTTv311
        )
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, *_: c.subscribe(pattern, 1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self.subscribed.wait(5):
            raise RuntimeError("the subscriber could not subscribe")

    def expect(self, target: int) -> None:
        self.count, self.target = 0, target
        self.done.clear()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self.count += 1
        self.last_at = time.monotonic()
        if self.target and self.count >= self.target:
            self.done.set()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish(port: int, count: int) -> float:
    """Send ``count`` QoS 1 values from a Resource as fast as it goes; return when the start was."""
    resource = Resource("bench", "127.0.0.1", port)
    resource.protocol = mqtt.MQTTv311
    resource.max_queued_messages = 0  # unbounded: the benchmark measures throughput, not the queue bound
    resource.register_outgoing_data("value")
    resource.start(use_threaded_networking=True)
    started = time.monotonic()
    for number in range(count):
        resource.send_data("value", number)
    publish.resource = resource  # type: ignore[attr-defined]
    return started


def throughput(central: MosquittoBroker, target_port: int, count: int, pattern: str) -> float:
    counter = Counter(central.port, pattern)
    counter.expect(count)
    started = publish(target_port, count)
    if not counter.done.wait(120):
        raise RuntimeError(f"only {counter.count} of {count} messages arrived")
    rate = count / (counter.last_at - started)
    publish.resource.stop()  # type: ignore[attr-defined]
    counter.stop()
    return rate


def gateway(workdir: Path, central_port: int, with_uplink: bool) -> MosquittoBroker:
    lines: list[str] = []
    if with_uplink:
        uplink = UplinkConfig(
            addresses=(("127.0.0.1", central_port),), remote_prefix="gateways/gw/", state_dir=workdir / "state",
            reconnect_min=1, reconnect_max=1,
        )
        lines = uplinkbridge.config_lines(uplink, "gw")
    broker = MosquittoBroker(extra_config=[*lines, "log_type error"], workdir=workdir)
    broker.start()
    return broker


def rss_mib(broker: MosquittoBroker) -> float:
    assert broker.pid is not None
    return psutil.Process(broker.pid).memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count = 2000 if args.quick else 20000
    queued = 1000 if args.quick else 10000
    print(describe_machine())
    with tempfile.TemporaryDirectory(prefix="sghost-bench-uplink-") as tmp:
        root = Path(tmp)
        central_dir = root / "central"
        central = MosquittoBroker(
            extra_config=["persistence true", f"persistence_location {central_dir}/", "max_queued_messages 0",
                          "log_type error"],
            workdir=central_dir,
        )
        central.start()
        plain = gateway(root / "plain", central.port, with_uplink=False)
        idle_plain = rss_mib(plain)
        plain.cleanup()
        bridged = gateway(root / "bridged", central.port, with_uplink=True)
        time.sleep(2)  # sleep-ok: let the bridge connect and settle before the idle reading
        idle_bridged = rss_mib(bridged)

        direct_rates, uplink_rates = [], []
        for _ in range(1 if args.quick else 3):
            direct_rates.append(throughput(central, central.port, count, TOPIC))
            uplink_rates.append(throughput(central, bridged.port, count, "gateways/gw/" + TOPIC))
        print(f"QoS 1 msgs/s, {count} messages, best of {len(direct_rates)}: "
              f"direct {max(direct_rates):.0f}, through the uplink {max(uplink_rates):.0f} "
              f"(ratio {max(uplink_rates) / max(direct_rates):.2f})")

        drain = Counter(central.port, "gateways/gw/" + TOPIC, client_id="bench-drain")
        drain.stop()  # a persistent session: central keeps its subscription and queue while it is away
        central.stop()
        publish(bridged.port, queued)
        resource = publish.resource  # type: ignore[attr-defined]
        deadline = time.monotonic() + 60
        while resource.mqttclient._out_messages and time.monotonic() < deadline:  # until the local broker has all
            time.sleep(0.05)  # sleep-ok: polling paho's queue, which has no event for "all acknowledged"
        time.sleep(3)  # sleep-ok: two $SYS/persistence intervals, so RSS reflects the queue
        queued_rss = rss_mib(bridged)
        restarted = time.monotonic()
        central.start()
        drain = Counter(central.port, "gateways/gw/" + TOPIC, client_id="bench-drain")
        drain.expect(queued)
        if not drain.done.wait(120):
            raise RuntimeError(f"only {drain.count} of {queued} queued messages arrived")
        print(f"drain of {queued} queued messages after the outage: {drain.last_at - restarted:.2f} s "
              f"from central's restart (the bridge's reconnect, up to 1 s, included)")
        print(f"gateway broker RSS: without uplink {idle_plain:.1f} MiB, with uplink idle {idle_bridged:.1f} MiB "
              f"(+{idle_bridged - idle_plain:.1f}), holding {queued} queued {queued_rss:.1f} MiB "
              f"(+{queued_rss - idle_plain:.1f})")
        resource.stop()
        drain.stop()
        bridged.cleanup()
        central.cleanup()


if __name__ == "__main__":
    main()
