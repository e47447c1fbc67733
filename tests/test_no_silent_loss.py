"""No message lost without the sender knowing: QoS >= 1 is delivered or refused, QoS 0 drops are counted.

Real brokers and real processes: a subscriber in this process counts what the
broker delivered; sghost's own health and status say what was refused or dropped.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator

import paho.mqtt.client as mqtt
import pytest
from helpers.sgtest import LogWatch, log_watch
from paho.mqtt.enums import CallbackAPIVersion

from hostharness import manifest_text, run_cli, wait_until
from sgframework import PublishError, Resource
from sgframework.framework import App
from sghost.host.broker import MosquittoBroker, free_port
from sghost.testing import Recorder


class CountingSubscriber:
    """A raw paho QoS 1 subscriber that counts the messages on one topic and checks their order."""

    def __init__(self, broker: MosquittoBroker, topic: str) -> None:
        self.topic = topic
        self.count = 0
        self.out_of_order = 0
        self.last = 0
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        assert self._subscribed.wait(5), f"no SUBACK for {topic}"

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        number = int(message.payload)
        with self._changed:
            self.count += 1
            if number != self.last + 1:
                self.out_of_order += 1
            self.last = number
            self._changed.notify_all()

    def wait_for_count(self, expected: int, timeout: float) -> int:
        with self._changed:
            self._changed.wait_for(lambda: self.count >= expected, timeout)
            return self.count

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(scope="module")
def mosquitto() -> Iterator[MosquittoBroker]:
    """A broker that queues without bound for a slow subscriber: its own default (1,000) would drop there."""
    broker = MosquittoBroker(extra_config=["max_queued_messages 0"])
    broker.start()
    yield broker
    broker.stop()
    broker.cleanup()


@pytest.fixture
def counting(mosquitto: MosquittoBroker) -> Iterator[Callable[[str], CountingSubscriber]]:
    """``counting(topic)``: a subscriber counting on ``topic`` of the module's broker, stopped after the test."""
    made: list[CountingSubscriber] = []

    def make(topic: str) -> CountingSubscriber:
        made.append(CountingSubscriber(mosquitto, topic))
        return made[-1]

    yield make
    for subscriber in made:
        subscriber.stop()


@pytest.fixture
def logs() -> Iterator[LogWatch]:
    with log_watch() as watch:
        yield watch


def started(resource: Resource, *, threaded: bool = True) -> Resource:
    resource.protocol = mqtt.MQTTv311
    resource.register_outgoing_data("n")
    resource.start(use_threaded_networking=threaded)
    return resource


# ----------------------------------------------------------------- sgframework


@pytest.mark.timeout(240)
def test_a_threaded_resource_sending_100000_unpaced_qos1_messages_delivers_every_one(
    mosquitto: MosquittoBroker, counting: Callable[[str], CountingSubscriber]
) -> None:
    subscriber = counting("data/unpaced/n")
    resource = started(Resource("unpaced", "127.0.0.1", mosquitto.port))
    try:
        for number in range(1, 100_001):
            resource.send_data("n", number)  # waits for room when 10,000 wait for their acknowledgement
        assert subscriber.wait_for_count(100_000, timeout=120) == 100_000
        assert subscriber.out_of_order == 0
        counters = resource.counters
        assert (counters.published, counters.refused, counters.dropped) == (100_000, 0, 0)
        wait_until(lambda: resource.counters.acknowledged == 100_000, timeout=10)
        assert resource.counters.queued == 0 and resource.counters.queued_bytes == 0
    finally:
        resource.stop()


def test_in_loop_mode_a_full_queue_drives_the_network_itself_and_nothing_is_lost(
    mosquitto: MosquittoBroker, counting: Callable[[str], CountingSubscriber]
) -> None:
    subscriber = counting("data/looped/n")
    resource = Resource("looped", "127.0.0.1", mosquitto.port)
    resource.max_queued_messages = 100
    started(resource, threaded=False)
    try:
        wait_until(lambda: (resource.loop(), resource.is_connected)[1], timeout=5)
        for number in range(1, 20_001):
            resource.send_data("n", number)  # no loop() call in between: the send pumps the network
        while subscriber.count < 20_000 and resource.counters.queued:
            resource.loop()
        assert subscriber.wait_for_count(20_000, timeout=30) == 20_000
        assert subscriber.out_of_order == 0 and resource.counters.refused == 0
    finally:
        resource.stop()


def test_in_loop_mode_another_thread_sending_waits_for_the_loop_and_nothing_is_lost(
    mosquitto: MosquittoBroker, counting: Callable[[str], CountingSubscriber]
) -> None:
    subscriber = counting("data/worker/n")
    resource = Resource("worker", "127.0.0.1", mosquitto.port)
    resource.max_queued_messages = 100
    started(resource, threaded=False)
    refused: list[PublishError] = []

    def send_all() -> None:  # a plugin's reader thread, while the main thread runs loop()
        for number in range(1, 20_001):
            try:
                resource.send_data("n", number)
            except PublishError as error:
                refused.append(error)

    try:
        wait_until(lambda: (resource.loop(), resource.is_connected)[1], timeout=5)
        worker = threading.Thread(target=send_all)
        worker.start()
        while worker.is_alive() or (resource.counters.queued and subscriber.count < 20_000):
            resource.loop()
        worker.join()
        assert not refused, refused[:1]
        assert subscriber.wait_for_count(20_000, timeout=30) == 20_000 and subscriber.out_of_order == 0
    finally:
        resource.stop()


def test_disconnected_the_message_past_the_bound_is_refused_at_once_and_the_rest_delivered_later(
    fresh_mosquitto: MosquittoBroker, logs: LogWatch
) -> None:
    resource = Resource("outage", "127.0.0.1", fresh_mosquitto.port)
    resource.protocol = mqtt.MQTTv311
    resource.max_queued_messages = 5
    resource.register_outgoing_data("n")
    port = fresh_mosquitto.port
    fresh_mosquitto.stop()
    resource.start(use_threaded_networking=True)
    try:
        assert not resource.is_connected
        for number in range(1, 6):
            resource.send_data("n", number)
        with pytest.raises(PublishError) as refused:
            resource.send_data("n", 6)
        assert refused.value.topic == "data/outage/n"
        assert "5 messages already wait for the broker's acknowledgement (max_queued_messages)" in str(refused.value)
        assert "not connected" in str(refused.value)
        assert resource.counters.refused == 1 and resource.counters.queued == 5

        fresh_mosquitto.start()
        assert fresh_mosquitto.port == port
        recorder = Recorder("127.0.0.1", port, "data/outage/n").start()
        try:
            # QoS 1 messages queued while away are delivered after the reconnect, in order.
            wait_until(lambda: resource.counters.acknowledged == 5, timeout=20)
            assert resource.counters.queued == 0
        finally:
            recorder.stop()
    finally:
        resource.stop()


def test_the_byte_bound_refuses_too(mosquitto: MosquittoBroker) -> None:
    resource = Resource("bytes", "127.0.0.1", free_port())  # nobody listens: stays disconnected
    resource.protocol = mqtt.MQTTv311
    resource.max_queued_bytes = 1000
    resource.register_outgoing_data("n")
    resource.start(use_threaded_networking=True)
    try:
        resource.send_data("n", "x" * 600)
        with pytest.raises(PublishError, match=r"bytes already wait .*max_queued_bytes = 1,000"):
            resource.send_data("n", "x" * 600)
    finally:
        resource.stop()


def test_a_flood_of_refusals_writes_a_handful_of_log_lines_not_one_per_message(logs: LogWatch) -> None:
    resource = Resource("flooded", "127.0.0.1", free_port())
    resource.protocol = mqtt.MQTTv311
    resource.max_queued_messages = 10
    resource.register_outgoing_data("n")
    # However long the flood takes on this machine, it falls in one summary interval.
    resource._refusal_warning.interval = 3600
    resource.start(use_threaded_networking=True)
    try:
        refused = 0
        for number in range(10_000):
            try:
                resource.send_data("n", number)
            except PublishError:
                refused += 1
        assert refused == 9_990 and resource.counters.refused == 9_990
        assert len(logs.lines("Refused")) == 1, logs.lines("Refused")  # the first, then nothing until the summary
    finally:
        resource.stop()
    summary = "Refused 9,989 more messages in the last"
    resource._refusal_warning.interval = 0  # the summary comes at the next flush after the interval
    resource._flush_warnings()
    assert any(summary in line for line in logs.lines("Refused")), logs.lines("Refused")


def test_qos0_sent_while_disconnected_is_dropped_and_counted(logs: LogWatch) -> None:
    resource = Resource("qos0", "127.0.0.1", free_port())
    resource.protocol = mqtt.MQTTv311
    resource.qos = 0
    resource.register_outgoing_data("n")
    resource._drop_warning.interval = 3600  # however long the sends take, they fall in one summary interval
    resource.start(use_threaded_networking=True)
    try:
        for number in range(1000):
            assert resource.send_data("n", number) is None
        assert resource.counters.dropped == 1000 and resource.counters.published == 0
        assert len(logs.lines("Dropped")) == 1, logs.lines("Dropped")
    finally:
        resource.stop()


@pytest.mark.parametrize("bound", [0, 65_001, 1.5])
def test_a_queue_bound_paho_cannot_keep_is_refused_at_start(bound: object) -> None:
    app = App("bounded", "127.0.0.1", free_port())
    app.max_queued_messages = bound  # type: ignore[assignment]
    with pytest.raises(ValueError, match="max_queued_messages must be a whole number from 1 to 65,000"):
        app.start()


# ---------------------------------------------------------------------- sghost


FLOODER = """
[resources.flood]
type = "flooder"
"""


def test_a_callback_under_sghost_sends_50000_qos1_messages_and_every_one_arrives(
    mosquitto: MosquittoBroker, mqtt_recorder, host_factory, counting: Callable[[str], CountingSubscriber]
) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto, ["data/floodhost/#", "data/flood/flood", "resourceavailable/#"])
    subscriber = counting("data/flood/n")
    host_factory(manifest_text(mosquitto, FLOODER, host="floodhost"))
    recorder.wait_for("resourceavailable/flood/presence", "True", timeout=10)
    recorder.wait_for("data/floodhost/flood_refused", "0", timeout=10)
    recorder.publish("command/flood/flood", "50000")
    echo = recorder.wait_for("data/flood/flood", timeout=90)
    assert echo.payload == "sent 50000 refused 0"
    assert subscriber.wait_for_count(50_000, timeout=60) == 50_000
    assert subscriber.out_of_order == 0
    health = recorder.wait_until(
        lambda: (doc := recorder.latest("data/floodhost/health")) and json.loads(doc)["resources"]["flood"], 10
    )
    assert health["refused"] == 0 and health["dropped"] == 0 and "queued" in health  # type: ignore[index]


QOS0_COUNTER = """
[resources.ticker]
type = "counter"
[resources.ticker.settings]
interval = 0.02
"""


def test_qos0_drops_during_an_outage_appear_in_status_and_in_res_dropped(fresh_mosquitto, tmp_path) -> None:
    from hostharness import HostProcess

    manifest = tmp_path / "hostconfig.toml"
    manifest.write_text(manifest_text(fresh_mosquitto, QOS0_COUNTER, host="droppy", broker_extra="qos = 0"))
    host = HostProcess(manifest).start()
    try:
        recorder = Recorder("127.0.0.1", fresh_mosquitto.port, "data/#").start()
        recorder.wait_for("data/droppy/ticker_dropped", "0", timeout=15)
        recorder.stop()
        fresh_mosquitto.stop()

        def dropped() -> int:
            answer = run_cli("status", "--json", "-c", str(manifest))
            if answer.returncode != 0:
                return 0
            return int(json.loads(answer.stdout)["resources"]["ticker"].get("dropped", 0))

        assert wait_until(dropped, timeout=20, interval=0.2), "sghost status shows no dropped message"
        shown = run_cli("status", "-c", str(manifest)).stdout
        assert "DROPPED" in shown and "REFUSED" in shown

        fresh_mosquitto.start()
        recorder = Recorder("127.0.0.1", fresh_mosquitto.port, "data/droppy/#").start()
        try:
            value = recorder.wait_until(
                lambda: (v := recorder.latest("data/droppy/ticker_dropped")) and v.isdigit() and int(v) > 0 and v,
                timeout=30,
            )
            assert value, "data/droppy/ticker_dropped never showed the drops"
        finally:
            recorder.stop()
    finally:
        host.stop()
