"""Pytest helpers for sghost and resource plugins: a private broker and a recording subscriber.

Installed as a pytest plugin (entry point ``pytest11``), so a plugin
distribution's tests can use the fixtures without importing anything:

- ``mosquitto``: a private mosquitto on a free 127.0.0.1 port, one per test module.
- ``fresh_mosquitto``: the same, one per test, for tests that stop or break it.
- ``mqtt_recorder``: a factory of :class:`Recorder` subscribers on a broker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from sghost.host.broker import MosquittoBroker


@dataclass(frozen=True)
class Received:
    """One message as a subscriber saw it."""

    topic: str
    payload: str
    retain: bool
    qos: int
    at: float


class Recorder:
    """A raw paho subscriber that records every message and waits on conditions.

    It uses no sgframework code, so tests observe the broker as any client would.
    """

    def __init__(
        self, host: str, port: int, topics: str | list[str] = "#", client_id: str = "", clean_session: bool = True
    ) -> None:
        """``clean_session=False`` (with a ``client_id``) keeps the subscription and queue across broker restarts."""
        self.host, self.port = host, port
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.messages: list[Received] = []
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=clean_session
        )
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message

    def start(self, timeout: float = 5.0) -> Recorder:
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            raise TimeoutError(f"recorder could not subscribe on {self.host}:{self.port}")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def wait_for(
        self,
        topic: str,
        payload: str | None = None,
        timeout: float = 5.0,
        after: float = 0.0,
        retain: bool | None = None,
    ) -> Received:
        """Return the first message on ``topic`` (with ``payload``) received at or after ``after``."""

        def match(message: Received) -> bool:
            return (
                message.topic == topic
                and (payload is None or message.payload == payload)
                and message.at >= after
                and (retain is None or message.retain == retain)
            )

        found = self.wait_until(lambda: next((m for m in self.messages if match(m)), None), timeout)
        if found is None:
            seen = [(m.topic, m.payload) for m in self.messages if m.topic == topic]
            raise AssertionError(f"no message {payload!r} on {topic!r} within {timeout} s; seen there: {seen}")
        return found

    def wait_until(self, condition: Callable[[], object], timeout: float = 5.0) -> object:
        """Wait until ``condition()`` is truthy (re-checked at each message); return its value or None."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = condition()
                remaining = deadline - time.monotonic()
                if value or remaining <= 0:
                    return value
                self._changed.wait(min(remaining, 0.1))

    def on(self, topic: str) -> list[Received]:
        """Every message received on ``topic`` so far."""
        with self._changed:
            return [m for m in self.messages if m.topic == topic]

    def latest(self, topic: str) -> str | None:
        messages = self.on(topic)
        return messages[-1].payload if messages else None

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        client.subscribe([(topic, 2) for topic in self.topics])

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        received = Received(
            message.topic,
            message.payload.decode("utf-8", errors="replace"),
            bool(message.retain),
            message.qos,
            time.monotonic(),
        )
        with self._changed:
            self.messages.append(received)
            self._changed.notify_all()


def _private_mosquitto() -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker()
    broker.start()
    yield broker
    broker.cleanup()


@pytest.fixture(scope="module")
def mosquitto() -> Iterator[MosquittoBroker]:
    """A private mosquitto on a free loopback port, shared by the tests of one module."""
    yield from _private_mosquitto()


@pytest.fixture
def fresh_mosquitto() -> Iterator[MosquittoBroker]:
    """A private mosquitto for one test, which may stop and restart it."""
    yield from _private_mosquitto()


@pytest.fixture
def mqtt_recorder() -> Iterator[Callable[..., Recorder]]:
    """Factory: ``mqtt_recorder(broker, topics="#")`` returns a started :class:`Recorder`."""
    started: list[Recorder] = []

    def make(broker: MosquittoBroker, topics: str | list[str] = "#") -> Recorder:
        recorder = Recorder(broker.host, broker.port, topics).start()
        started.append(recorder)
        return recorder

    yield make
    for recorder in started:
        recorder.stop()
