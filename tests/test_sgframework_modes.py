"""The guarantees of each threading mode (docs/sgframework.md, "Which thread runs what"), on a real broker.

- threaded: callbacks run on the library's callback thread; one that sends a lot waits
  for room (throttled, not refused); one that hangs holds up callbacks, not the connection;
- threaded with ``callbacks_in_thread = False``: callbacks run inside ``run_callbacks()``
  on the application's thread, with the same throttling; ``wake_callbacks()`` ends its wait;
- loop mode from a single thread, and a full queue while connected and while disconnected:
  tests/test_no_silent_loss.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from helpers.sgtest import StatusCalls, log_watch, wait

from sgframework import Resource
from sghost.host.broker import MosquittoBroker
from sghost.testing import Recorder


@pytest.fixture(scope="module")
def broker() -> Iterator[MosquittoBroker]:
    """A broker that queues without bound for the recorder: its own default (1,000) would drop there."""
    made = MosquittoBroker(extra_config=["max_queued_messages 0"])
    made.start()
    yield made
    made.stop()
    made.cleanup()


@pytest.fixture
def resources() -> Iterator[list[Resource]]:
    made: list[Resource] = []
    yield made
    for resource in made:
        if resource.mqttclient is not None:
            resource.stop()


def flooding_resource(broker: MosquittoBroker, name: str, count: int, made: list[Resource]) -> Resource:
    """A resource whose command ``flood`` sends ``count`` QoS 1 messages on ``data/<name>/n`` from its callback."""
    resource = Resource(name, broker.host, broker.port)
    resource.protocol = mqtt.MQTTv311
    resource.max_queued_messages = 50  # far fewer than the callback sends: it must wait for room
    resource.register_outgoing_data("n")

    def flood(app: Resource, *args: Any) -> None:
        for number in range(1, count + 1):
            app.send_data("n", number)

    resource.register_incoming_command("flood", flood, echo=False)
    made.append(resource)
    return resource


def payloads(recorder: Recorder, topic: str) -> list[str]:
    return [message.payload for message in recorder.on(topic)]


def wait_for_count(recorder: Recorder, topic: str, count: int, pump: Callable[[], object] | None = None) -> int:
    if pump is None:
        recorder.wait_until(lambda: len(recorder.on(topic)) >= count, timeout=60)
    else:
        wait(lambda: len(recorder.on(topic)) >= count, timeout=60, pump=pump)
    return len(recorder.on(topic))


def test_threaded_a_callback_that_sends_a_lot_is_throttled_not_refused(
    broker: MosquittoBroker, mqtt_recorder: Callable[..., Recorder], resources: list[Resource]
) -> None:
    recorder = mqtt_recorder(broker, "data/flooded/n")
    resource = flooding_resource(broker, "flooded", 5000, resources)
    resource.start(use_threaded_networking=True)
    assert resource.is_connected
    resource.send_command("flooded", "flood", "go")
    assert wait_for_count(recorder, "data/flooded/n", 5000) == 5000, resource.counters
    assert payloads(recorder, "data/flooded/n") == [str(n) for n in range(1, 5001)]
    assert resource.counters.refused == 0


def test_run_callbacks_a_callback_that_sends_a_lot_is_throttled_not_refused(
    broker: MosquittoBroker, mqtt_recorder: Callable[..., Recorder], resources: list[Resource]
) -> None:
    recorder = mqtt_recorder(broker, "data/pumped/n")
    resource = flooding_resource(broker, "pumped", 5000, resources)
    resource.callbacks_in_thread = False
    resource.start(use_threaded_networking=True)
    wait(lambda: resource.is_connected, timeout=5, pump=lambda: resource.run_callbacks(0.05))
    resource.send_command("pumped", "flood", "go")
    count = wait_for_count(recorder, "data/pumped/n", 5000, pump=lambda: resource.run_callbacks(0.05))
    assert count == 5000 and resource.counters.refused == 0
    assert payloads(recorder, "data/pumped/n") == [str(n) for n in range(1, 5001)]


def test_run_callbacks_runs_callbacks_on_the_calling_thread_and_a_wake_ends_its_wait(
    broker: MosquittoBroker, resources: list[Resource]
) -> None:
    threads: list[str] = []
    resource = Resource("woken", broker.host, broker.port)
    resource.register_incoming_command("cmd", lambda *args: threads.append(threading.current_thread().name))
    resource.callbacks_in_thread = False
    resources.append(resource)
    resource.start(use_threaded_networking=True)
    wait(lambda: resource.is_connected, timeout=5, pump=lambda: resource.run_callbacks(0.05))
    resource.send_command("woken", "cmd", "1")
    wait(lambda: threads, timeout=5, pump=lambda: resource.run_callbacks(0.05))
    assert threads == [threading.current_thread().name]
    waker = threading.Thread(target=resource.wake_callbacks)
    waker.start()
    resource.run_callbacks(600)  # returns at the wake, not after 600 s
    waker.join()


def test_threaded_a_hung_callback_holds_up_callbacks_not_the_connection(
    broker: MosquittoBroker, mqtt_recorder: Callable[..., Recorder], resources: list[Resource]
) -> None:
    recorder = mqtt_recorder(broker, "data/hung/#")
    release = threading.Event()
    entered = threading.Event()
    seen: list[str] = []

    def hang(app: Resource, messagetype: str, servicename: str, signalname: str, payload: str) -> None:
        seen.append(payload)
        if payload == "hang":
            entered.set()
            release.wait(60)

    resource = Resource("hung", broker.host, broker.port)
    resource.register_incoming_command("cmd", hang, echo=False)
    resource.register_outgoing_data("n")
    resources.append(resource)
    resource.start(use_threaded_networking=True)
    resource.send_command("hung", "cmd", "hang")
    assert entered.wait(5), "the callback did not run"
    resource.send_command("hung", "cmd", "after")
    resource.send_data("n", 1)  # the network goes on: acknowledged and delivered while the callback hangs
    recorder.wait_until(lambda: payloads(recorder, "data/hung/n") == ["1"], timeout=5)
    wait(lambda: resource.counters.acknowledged >= 1 and resource.counters.queued == 0, timeout=5)
    assert resource.is_connected and seen == ["hang"]  # the next callback waits its turn
    release.set()
    wait(lambda: seen == ["hang", "after"], timeout=5)


def test_threaded_an_idle_client_wakes_for_its_keepalive_and_keeps_its_connection(
    broker: MosquittoBroker, resources: list[Resource]
) -> None:
    """The network thread sleeps until the keepalive is due (not 1 s slices): the pings still go out
    in time, so the broker (which drops a client silent for 1.5 keepalives) keeps the connection."""
    status = StatusCalls()
    resource = Resource("idler", broker.host, broker.port)
    resource.keepalive = 1
    resource.on_broker_connectionstatus_info = status
    resources.append(resource)
    logging.getLogger("sgframework.idler").setLevel(logging.DEBUG)  # paho's packet lines, for the barrier
    try:
        with log_watch() as logs:
            resource.start(use_threaded_networking=True)
            wait(lambda: sum("Received PINGRESP" in text for text in logs.texts()) >= 3, timeout=15)
            assert sum("Received PINGRESP" in text for text in logs.texts()) >= 3, "no keepalive pings"
        assert resource.is_connected and status.states == [True]  # never dropped by the broker
    finally:
        logging.getLogger("sgframework.idler").setLevel(logging.NOTSET)


def test_threaded_stop_returns_and_says_goodbye_while_a_callback_hangs(
    broker: MosquittoBroker, mqtt_recorder: Callable[..., Recorder]
) -> None:
    recorder = mqtt_recorder(broker, "resourceavailable/stuck/presence")
    release = threading.Event()
    entered = threading.Event()

    def hang(*args: Any) -> None:
        entered.set()
        release.wait(60)

    resource = Resource("stuck", broker.host, broker.port)
    resource.register_incoming_command("cmd", hang, echo=False)
    resource.start(use_threaded_networking=True)
    try:
        resource.send_command("stuck", "cmd", "hang")
        assert entered.wait(5), "the callback did not run"
        resource.stop()  # returns although paho's thread is still inside the callback
        recorder.wait_until(lambda: payloads(recorder, "resourceavailable/stuck/presence")[-1:] == ["False"])
        assert payloads(recorder, "resourceavailable/stuck/presence")[-1] == "False"
    finally:
        release.set()
