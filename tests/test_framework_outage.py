"""sgframework across broker outages: reconnect, re-announce, queued QoS 1 data.

Each test gets its own broker (``fresh_mosquitto``) because it stops it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from helpers.sgtest import Calls, StatusCalls, log_watch, short_name, wait

from sgframework import App, Resource
from sghost.host.broker import MosquittoBroker
from sghost.testing import Recorder


class LoopThread:
    """Calls ``obj.loop()`` in a thread of its own, as a Tk program's timer would."""

    def __init__(self, obj: App) -> None:
        self.obj = obj
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            self.obj.loop()

    def start(self) -> LoopThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()
        self._thread.join(10)


@pytest.fixture(params=["threaded", "loop"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def runner(mode: str) -> Iterator[Callable[[App], None]]:
    """Starts an App/Resource in the parametrized mode; stops it at the end."""
    started: list[tuple[App, LoopThread | None]] = []

    def run(obj: App) -> None:
        obj.timeout = 0.05
        if mode == "threaded":
            obj.start(use_threaded_networking=True)
            started.append((obj, None))
        else:
            obj.start()
            started.append((obj, LoopThread(obj).start()))

    yield run
    for obj, thread in started:
        if thread is not None:
            thread.stop()
        if obj.mqttclient is not None:
            obj.stop()


def restart_new_recorder(broker: MosquittoBroker, mqtt_recorder: Callable[..., Recorder]) -> Recorder:
    broker.start()
    return mqtt_recorder(broker)


def test_everything_is_announced_again_after_the_broker_restarts(
    fresh_mosquitto: MosquittoBroker, mqtt_recorder: Callable[..., Recorder], runner: Callable[[App], None]
) -> None:
    name = short_name("rs")
    resource = Resource(name, fresh_mosquitto.host, fresh_mosquitto.port)
    commands = Calls()
    resource.register_incoming_command("cmd", commands, defaultvalue="d0")
    resource.register_outgoing_data("level", defaultvalue=1)
    status = StatusCalls()
    resource.on_broker_connectionstatus_info = status
    recorder = mqtt_recorder(fresh_mosquitto)
    runner(resource)
    recorder.wait_for(f"data/{name}/level", "1")
    recorder.publish(f"command/{name}/cmd", "d1")
    recorder.wait_for(f"data/{name}/cmd", "d1")
    resource.send_data("level", 2)
    recorder.wait_for(f"data/{name}/level", "2")

    fresh_mosquitto.stop()  # persistence is off: retained messages and sessions are gone
    assert status.wait_for_count(2) == [True, False]
    assert not resource.is_connected
    recorder = restart_new_recorder(fresh_mosquitto, mqtt_recorder)

    assert status.wait_for_count(3) == [True, False, True]
    recorder.wait_for(f"resourceavailable/{name}/presence", "True")
    recorder.wait_for(f"commandavailable/{name}/cmd", "True")
    recorder.wait_for(f"dataavailable/{name}/level", "True")
    recorder.wait_for(f"data/{name}/cmd", "d1")  # the latest echo, not the registered default
    recorder.wait_for(f"data/{name}/level", "2")  # the latest send_data
    assert resource.is_connected and resource.last_connection_error is None
    recorder.publish(f"command/{name}/cmd", "after")  # subscriptions are back too
    commands.wait_for("after")
    recorder.wait_for(f"data/{name}/cmd", "after")


def test_qos1_data_sent_during_an_outage_arrives_afterwards_and_qos0_is_dropped_with_a_warning(
    fresh_mosquitto: MosquittoBroker, mqtt_recorder: Callable[..., Recorder], runner: Callable[[App], None]
) -> None:
    name = short_name("oq")
    resource = Resource(name, fresh_mosquitto.host, fresh_mosquitto.port)
    resource.register_outgoing_data("n")
    status = StatusCalls()
    resource.on_broker_connectionstatus_info = status
    runner(resource)
    wait(lambda: resource.is_connected)
    fresh_mosquitto.stop()
    status.wait_for_count(2)
    with log_watch() as logs:
        for i in range(20):
            resource.send_data("n", i)
        resource.qos = 0  # read at each publish
        resource.send_data("n", "qos0")
        logs.wait_for("not connected to the broker and qos is 0")
        resource.qos = 1
    recorder = restart_new_recorder(fresh_mosquitto, mqtt_recorder)
    topic = f"data/{name}/n"
    recorder.wait_until(lambda: len(recorder.on(topic)) >= 20, timeout=10)
    assert [m.payload for m in recorder.on(topic)] == [str(i) for i in range(20)]
    resource.send_data("n", "later")
    recorder.wait_for(topic, "later")
    assert "qos0" not in [m.payload for m in recorder.on(topic)]


def test_app_gets_data_again_after_the_broker_restarts(
    fresh_mosquitto: MosquittoBroker, mqtt_recorder: Callable[..., Recorder], runner: Callable[[App], None]
) -> None:
    app = App(short_name("ra"), fresh_mosquitto.host, fresh_mosquitto.port)
    calls = Calls()
    app.register_incoming_data("meter", "v", calls)
    status = StatusCalls()
    app.on_broker_connectionstatus_info = status
    runner(app)
    assert status.wait_for_count(1) == [True]
    publisher = mqtt_recorder(fresh_mosquitto, "none/none")
    publisher.publish("data/meter/v", "1")
    calls.wait_for("1")
    fresh_mosquitto.restart()
    assert status.wait_for_count(3) == [True, False, True]
    publisher = mqtt_recorder(fresh_mosquitto, "none/none")
    publisher.publish("data/meter/v", "2")
    calls.wait_for("2")


def test_data_published_once_the_status_says_connected_is_received(
    fresh_mosquitto: MosquittoBroker, mqtt_recorder: Callable[..., Recorder], runner: Callable[[App], None]
) -> None:
    # The status callback runs on the network thread; publishing from another client
    # inside it, and waiting for the broker's PUBACK, would beat a subscription that
    # is only queued. True must mean "the subscriptions are in place".
    publisher = mqtt_recorder(fresh_mosquitto, "none/none")
    app = App(short_name("sc"), fresh_mosquitto.host, fresh_mosquitto.port)
    calls = Calls()
    app.register_incoming_data("meter", "v", calls)

    def on_status(obj: App, connected: bool) -> None:
        if connected:
            publisher.publish("data/meter/v", f"sent when connected #{len(calls.calls)}")

    app.on_broker_connectionstatus_info = on_status
    runner(app)
    calls.wait_for("sent when connected #0")
    fresh_mosquitto.restart()
    calls.wait_for("sent when connected #1", timeout=10)


def test_unreachable_broker_start_returns_while_the_broker_is_away_and_connects_later(
    fresh_mosquitto: MosquittoBroker, mqtt_recorder: Callable[..., Recorder]
) -> None:
    fresh_mosquitto.stop()
    name = short_name("ur")
    resource = Resource(name, fresh_mosquitto.host, fresh_mosquitto.port)
    status = StatusCalls()
    resource.on_broker_connectionstatus_info = status
    started = threading.Event()
    thread = threading.Thread(target=lambda: (resource.start(use_threaded_networking=True), started.set()))
    thread.start()
    try:
        # The broker stays away until start() has returned: a start() that waited for it never would.
        assert started.wait(15), "start() blocked although the broker is away"
        assert not resource.is_connected
        assert resource.last_connection_error and str(fresh_mosquitto.port) in resource.last_connection_error
        recorder = restart_new_recorder(fresh_mosquitto, mqtt_recorder)
        recorder.wait_for(f"resourceavailable/{name}/presence", "True", timeout=10)
        assert status.wait_for_count(1) == [True]  # told once the broker acknowledged the presence
    finally:
        thread.join(5)
        resource.stop()
