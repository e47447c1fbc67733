"""The inbound dispatch: registrations, on-change filtering, and which thread runs a user's callback.

A mixin of :class:`sgframework.App`: the state it uses is created by ``App.__init__``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from sgframework import constants
from sgframework.constants import (
    PREFIX_COMMANDAVAILABLE,
    PREFIX_DATA,
    PREFIX_DATAAVAILABLE,
    PREFIX_RESOURCEAVAILABLE,
    SUFFIX_PRESENCE,
)
from sgframework.topics import build_topic, validate_name

InputCallback = Callable[[Any, str, str, str, str], Any]


_MESSAGE = "message"


_STATUS = "status"


_WAKE_EVENT = ("wake", None)
"""Put by wake_callbacks(): makes a waiting run_callbacks() return; otherwise ignored."""


_CALLBACK_BATCH = 200
"""Events run_callbacks() handles in one call, so that its caller's timers and heartbeat are not starved."""


class _Input:
    """A subscription that leads to a user callback.

    A plain class, not a dataclass: ``dataclasses`` imports ``inspect`` and ``ast``, about 1.5 MiB
    in every resource process (bench/framework.py (e)).
    """

    __slots__ = (
        "callback", "callback_on_change_only", "defaultvalue", "echo", "last_payload", "last_retained_echo",
        "messagetype", "send_echo_as_retained", "servicename", "signalname",
    )

    def __init__(
        self,
        messagetype: str,
        servicename: str,
        signalname: str,
        callback: InputCallback,
        callback_on_change_only: bool = False,
        echo: bool = False,
        send_echo_as_retained: bool = False,
        defaultvalue: str | None = None,
    ) -> None:
        self.messagetype = messagetype
        self.servicename = servicename
        self.signalname = signalname
        self.callback = callback
        self.callback_on_change_only = callback_on_change_only
        self.echo = echo
        self.send_echo_as_retained = send_echo_as_retained
        self.defaultvalue = defaultvalue
        self.last_payload: str | None = None
        self.last_retained_echo: str | None = None
        """The last echo sent retained, for republish() of a signal without a default."""


class Inbound:
    """Subscribes to the registered topics and hands each message to its callback, on the thread whose turn it is."""

    def _init_inbound(self) -> None:
        """The dispatch's own state (called by ``App.__init__``)."""
        self._events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._callback_thread: threading.Thread | None = None
        """Threaded mode with callbacks_in_thread: the relief thread (sgframework.inbound)."""
        self._relief_stop = False
        self._relief_wanted = threading.Event()
        self._relief_sleep = threading.Event()
        self._inline_running = False
        """Threaded mode: True while paho's thread runs the user's callbacks (outside paho's loop)."""
        self._delivered = 0
        """Events delivered so far: tells the relief thread whether the same callback still runs."""

    def register_incoming_data(
        self,
        servicename: str,
        signalname: str,
        callback: InputCallback,
        callback_on_change_only: bool = False,
    ) -> None:
        """Call ``callback`` for data on ``data/<servicename>/<signalname>``."""
        self._register_input(
            _Input(
                PREFIX_DATA,
                validate_name(servicename, "servicename"),
                validate_name(signalname, "signalname"),
                callback,
                callback_on_change_only=callback_on_change_only,
            )
        )

    def register_incoming_availability(
        self, prefix: str, servicename: str, signalname: str, callback: InputCallback
    ) -> None:
        """Call ``callback`` for availability information on ``<prefix>/<servicename>/<signalname>``.

        ``prefix`` is ``PREFIX_COMMANDAVAILABLE``, ``PREFIX_DATAAVAILABLE`` or
        ``PREFIX_RESOURCEAVAILABLE``; for the latter ``signalname`` is ignored
        and the presence topic is used.
        """
        allowed = (PREFIX_COMMANDAVAILABLE, PREFIX_DATAAVAILABLE, PREFIX_RESOURCEAVAILABLE)
        if prefix not in allowed:
            raise ValueError(f"The prefix must be one of {', '.join(allowed)}, not {prefix!r}")
        if prefix == PREFIX_RESOURCEAVAILABLE:
            signalname = SUFFIX_PRESENCE
        self._register_input(
            _Input(
                prefix,
                validate_name(servicename, "servicename"),
                validate_name(signalname, "signalname"),
                callback,
            )
        )

    def run_callbacks(self, timeout: float) -> None:
        """Run the callbacks of the messages and status changes that arrived (an extension).

        For threaded networking with ``callbacks_in_thread = False``: the application's
        own loop calls this, so that callbacks run on its thread while paho's thread
        keeps the network going. Waits up to ``timeout`` seconds for the first event,
        then runs at most a batch of those already waiting.
        """
        try:
            event = self._events.get(timeout=timeout) if timeout > 0 else self._events.get_nowait()
        except queue.Empty:
            self._flush_warnings()
            return
        if event is _WAKE_EVENT:
            self._flush_warnings()
            return
        self._deliver(event)
        self._run_pending_callbacks(_CALLBACK_BATCH)

    def wake_callbacks(self) -> None:
        """Make a :meth:`run_callbacks` that is waiting return now (an extension).

        Thread safe, and safe to call from a signal handler (it only puts a marker on a
        ``queue.SimpleQueue``, whose ``put`` is reentrant). Called while nobody waits, it
        makes the next ``run_callbacks()`` return at once.
        """
        self._events.put(_WAKE_EVENT)

    def _run_pending_callbacks(self, limit: int | None = None) -> None:
        handled = 0
        while limit is None or handled < limit:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            self._delivered += 1
            self._deliver(event)
            handled += 1
        self._flush_warnings()

    def _after_callback(self, item: _Input, payload: str, result: Any) -> None:
        """Act on a callback's return value; the Resource echoes commands."""

    def _register_input(self, item: _Input) -> None:
        topic = build_topic(item.messagetype, item.servicename, item.signalname)
        with self._state_lock:
            self._inputs[topic] = item
        client = self.mqttclient
        if client is not None and self._connected:
            client.subscribe(topic, qos=self.qos)

    def _subscribe_all(self, client: mqtt.Client) -> None:
        with self._state_lock:
            topics = [(topic, self.qos) for topic in self._inputs]
        if topics:
            result, mid = client.subscribe(topics)
            if result == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                self._ready.expect(mid)

    def _start_callback_thread(self, client: Any) -> None:
        """Threaded mode: callbacks run on paho's thread after each network step; a relief thread
        keeps the network going while one of them runs long (it hangs, or waits for room)."""
        self._relief_stop = False
        self._relief_wanted = threading.Event()
        client.after_round = self._run_inline_callbacks
        self._callback_thread = threading.Thread(
            target=self._run_relief, args=(client,), name=f"sgframework-{self.name}-relief", daemon=True
        )
        self._callback_thread.start()

    def _run_inline_callbacks(self) -> None:
        """On paho's thread, between network steps: run every callback queued, in arrival order."""
        if self._events.empty():
            return
        if not self._relief_wanted.is_set():
            self._relief_wanted.set()  # the relief thread watches until callbacks stop coming
        self._inline_running = True
        try:
            self._run_pending_callbacks()
        finally:
            self._inline_running = False

    def _run_relief(self, client: Any) -> None:
        """Sleeps while no callback runs; while they do, checks every RELIEF_AFTER seconds whether the same
        callback still runs, and if so, runs the network steps until it returns."""
        wanted = self._relief_wanted
        while not self._relief_stop:
            if not wanted.wait(self._warnings_due()):
                self._flush_warnings()
                continue
            quiet = 0
            while not self._relief_stop and quiet < 2:
                seen = self._delivered
                running = self._inline_running
                self._relief_sleep.wait(constants.RELIEF_AFTER)
                if running and self._inline_running and self._delivered == seen:
                    self._pump_for_callback(client)
                quiet = 0 if running or self._inline_running else quiet + 1
                self._flush_warnings()
            wanted.clear()

    def _pump_for_callback(self, client: Any) -> None:
        seen = self._delivered
        while not self._relief_stop and self._inline_running and self._delivered == seen:
            rc = client.relieve(constants.RELIEF_AFTER)
            if rc is not None and rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return  # connection lost: paho's thread reconnects once the callback returns

    def _stop_callback_thread(self) -> None:
        thread, self._callback_thread = self._callback_thread, None
        if thread is None:
            return
        self._relief_stop = True
        self._relief_sleep.set()
        self._relief_wanted.set()
        if thread is not threading.current_thread():
            thread.join(constants.STOP_WAIT_TIME)
        self._relief_sleep = threading.Event()

    def _deliver(self, event: tuple[str, Any]) -> None:
        kind, value = event
        if kind == _MESSAGE:
            try:
                self._handle_message(value)
            except Exception:
                self.logger.exception("Error while handling a message on %r", value.topic)
        elif kind == _STATUS:
            self._deliver_status(value)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._events.put((_MESSAGE, message))  # user callbacks never run on paho's network loop

    def _handle_message(self, message: mqtt.MQTTMessage) -> None:
        topic = message.topic
        levels = topic.split("/")
        if len(levels) != 3:
            self.logger.warning("Ignored a message on %r: topics have exactly three levels", topic)
            return
        try:
            payload = message.payload.decode("utf-8").strip()
        except UnicodeDecodeError:
            self.logger.warning("Dropped a message on %r: the payload is not valid UTF-8", topic)
            return
        with self._state_lock:
            item = self._inputs.get(topic)
            if item is None:
                self.logger.debug("Ignored a message on unregistered topic %r", topic)
                return
            if item.callback_on_change_only and payload == item.last_payload:
                return
            item.last_payload = payload
        messagetype, servicename, signalname = (level.strip() for level in levels)
        try:
            result = item.callback(self, messagetype, servicename, signalname, payload)
        except Exception:
            self.logger.exception("The callback for %r raised an exception", topic)
            return
        self._after_callback(item, payload, result)
