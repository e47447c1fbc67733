"""The Secure Gateway App and Resource classes, on paho-mqtt 2.x.

See docs/sgframework.md for the API and for where this implementation
deliberately differs from the original one (no blind sleeps, TLS 1.2+,
reconnection, bad payloads survived).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sgframework import constants
from sgframework.addresses import broker_addresses
from sgframework.constants import (
    PAYLOAD_FALSE,
    PAYLOAD_TRUE,
    PREFIX_COMMAND,
    PREFIX_COMMANDAVAILABLE,
    PREFIX_DATA,
    PREFIX_DATAAVAILABLE,
    PREFIX_RESOURCEAVAILABLE,
    SUFFIX_PRESENCE,
)
from sgframework.topics import build_topic, validate_name

InputCallback = Callable[[Any, str, str, str, str], Any]
ConnectionStatusCallback = Callable[[Any, bool], Any]

_LEGACY_TLS_VERSIONS = {
    getattr(ssl, name) for name in ("PROTOCOL_TLSv1", "PROTOCOL_TLSv1_1") if hasattr(ssl, name)
}
_SESSION_EXPIRY_PERSISTENT = 0xFFFFFFFF
_MESSAGE = "message"
_STATUS = "status"
_STOP_EVENT = ("stop", None)
_CALLBACK_BATCH = 200
"""Events run_callbacks() handles in one call, so that its caller's timers and heartbeat are not starved."""
_WAIT_SLICE = 0.05
_ROOM_BATCH = 1000
"""A sender waiting for room is woken after this many acknowledgements (or a tenth of those it waits for)."""
"""Seconds between checks while a send waits for room (an acknowledgement also wakes it)."""


class PublishError(Exception):
    """A QoS >= 1 message that was not accepted for delivery: the queue is full, or paho refused it (an extension).

    ``topic`` is where it was to go, ``reason`` says why (the bound that was reached, and for how long it waited).
    """

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"Not published on {topic}: {reason}")
        self.topic = topic
        self.reason = reason


@dataclass(frozen=True)
class PublishCounters:
    """What an App or Resource did with the messages it was asked to send (an extension).

    ``published``: handed to the broker connection (any QoS). ``acknowledged``: QoS >= 1
    messages the broker acknowledged. ``refused``: sends that raised :class:`PublishError`
    (and echoes that could not be queued). ``dropped``: QoS 0 messages that could not be
    sent (no connection), and QoS >= 1 messages still unacknowledged when ``stop()``
    disconnected. ``queued``/``queued_bytes``: QoS >= 1 messages waiting for their
    acknowledgement now.
    """

    published: int = 0
    acknowledged: int = 0
    refused: int = 0
    dropped: int = 0
    queued: int = 0
    queued_bytes: int = 0


class _RateLimitedWarning:
    """Logs the first event of a kind at once, then at most one summary per interval: never a line per message."""

    def __init__(self, what: str, interval: float = constants.WARNING_SUMMARY_INTERVAL) -> None:
        self.what = what
        self.interval = interval
        self._lock = threading.Lock()
        self._window_start: float | None = None
        self._suppressed = 0
        self._last = ""

    def event(self, logger: logging.Logger, topic: str, reason: str) -> None:
        now = time.monotonic()
        with self._lock:
            if self._window_start is None:
                self._window_start = now
                first = True
            else:
                first = False
                self._suppressed += 1
                self._last = f"{topic}: {reason}"
        if first:
            logger.warning("%s a message on %s: %s", self.what, topic, reason)
        else:
            self.flush(logger, now)

    def flush(self, logger: logging.Logger, now: float | None = None) -> None:
        """Write the summary of a finished interval; after a quiet one, the next event is logged at once."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._window_start is None or now - self._window_start < self.interval:
                return
            suppressed, last, elapsed = self._suppressed, self._last, now - self._window_start
            self._suppressed = 0
            self._window_start = now if suppressed else None
        if suppressed:
            logger.warning(
                "%s %s more messages in the last %.0f s (the last on %s)", self.what, f"{suppressed:,}", elapsed, last
            )


@dataclass
class _Input:
    """A subscription that leads to a user callback."""

    messagetype: str
    servicename: str
    signalname: str
    callback: InputCallback
    callback_on_change_only: bool = False
    echo: bool = False
    send_echo_as_retained: bool = False
    defaultvalue: str | None = None
    last_payload: str | None = None
    last_retained_echo: str | None = None
    """The last echo sent retained, for republish() of a signal without a default."""


@dataclass
class _Output:
    """An outgoing data signal announced with ``dataavailable``."""

    signalname: str
    defaultvalue: str | None
    send_data_as_retained: bool
    last_retained: str | None = None
    """The last value sent retained, for republish() of a signal without a default."""


class _ReadyTracker:
    """Counts the SUBACKs and PUBACKs that must arrive before a (re)connection is complete."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: set[int] = set()
        self._collecting = False
        self.ready = threading.Event()
        self.settled = threading.Event()
        """Set when a connection attempt completed (after the user was told) or failed: what start() waits for."""

    def begin(self) -> None:
        with self._lock:
            self._pending.clear()
            self._collecting = True
            self.ready.clear()

    def expect(self, mid: int) -> None:
        with self._lock:
            self._pending.add(mid)

    def done(self, mid: int) -> bool:
        """An acknowledgement arrived; True if it completed the connection."""
        with self._lock:
            self._pending.discard(mid)
            return self._set_if_complete()

    def finish(self) -> bool:
        """Everything to expect is known; True if nothing is outstanding (the connection is complete)."""
        with self._lock:
            self._collecting = False
            return self._set_if_complete()

    def reset(self) -> None:
        with self._lock:
            self._pending.clear()
            self._collecting = False
            self.ready.clear()

    def _set_if_complete(self) -> bool:
        if self._collecting or self._pending or self.ready.is_set():
            return False
        self.ready.set()
        return True


class App:
    """App framework for the Secure Gateway.

    Sends commands to any resource and receives data (and availability
    information) from any resource. An App has no last will.

    :param name: name of the app; for resources also the middle level of their topics.
    :param host: broker host name; or (an extension) a list of ``"host:port"`` (or ``"host"``,
        which uses ``port``) tried in turn: on a failed or lost connection the next one is tried.
    :param port: broker port number (an ``int`` or a string such as ``"1883"``).
    :param certificate_directory: directory holding ``CA_CERTS``, ``CERTFILE`` and
        ``KEYFILE`` for mutual TLS, or ``None`` for a plain connection.

    Public attributes (``protocol``, ``tls_version``, ``qos``, ``timeout``,
    ``keepalive``, ``username``, ``password``, ``tls_insecure``) are read by
    :meth:`start`; a change takes effect at the next start.
    """

    CA_CERTS = constants.CA_CERTS
    CERTFILE = constants.CERTFILE
    KEYFILE = constants.KEYFILE

    _KIND = "App"

    def __init__(
        self,
        name: str,
        host: str | list[str],
        port: int | str = constants.DEFAULT_PORT,
        certificate_directory: str | None = None,
    ) -> None:
        self.name = validate_name(name, "name")
        self.host = host
        self.port = _parse_port(port)
        broker_addresses(host, self.port)  # a bad address fails here, not at the first connection
        self._address_index = 0
        self.certificate_directory = certificate_directory
        self.protocol: int = mqtt.MQTTv31
        self.tls_version: int = ssl.PROTOCOL_TLS_CLIENT
        self.tls_insecure = False
        self.qos: int = constants.DEFAULT_QOS
        self.timeout: float = constants.DEFAULT_TIMEOUT
        self.keepalive: float = constants.DEFAULT_KEEPALIVE_TIME
        self.username: str | None = None
        self.password: str | None = None
        self.max_queued_messages: int = constants.MAX_QUEUED_MESSAGES
        self.max_queued_bytes: int = constants.MAX_QUEUED_BYTES
        self.publish_timeout: float = constants.PUBLISH_TIMEOUT
        self.callbacks_in_thread = True
        """Threaded mode: run callbacks on a thread of the library's (default), or, when False, in
        :meth:`run_callbacks` called by the application's own loop (an extension)."""
        self.mqttclient: mqtt.Client | None = None
        self.logger = logging.getLogger(f"sgframework.{self.name}")
        self.userdata: Any = None
        self.on_broker_connectionstatus_info: ConnectionStatusCallback | None = None
        self.last_connection_error: str | None = None
        """Why the latest connection attempt failed, or ``None`` (an extension)."""

        self._inputs: dict[str, _Input] = {}
        self._state_lock = threading.RLock()
        self._ready = _ReadyTracker()
        self._use_threaded_networking = False
        self._use_clean_session = True
        self._connected = False
        self._reported_connected = False
        """What on_broker_connectionstatus_info was last told."""
        self._loop_socket_open = False
        self._stopping = False
        self._connection_refused = False
        self._next_loop_connect = 0.0
        self._loop_connect_delay = constants.RECONNECT_DELAY_MIN
        self._events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._callback_thread: threading.Thread | None = None
        self._network_thread: int | None = None
        self._in_network_loop = False
        """Loop mode: True while paho's loop runs (a send from inside it cannot pump the network)."""
        self._loop_thread: int | None = None
        """Loop mode: the thread that calls loop(); a send from another thread waits for it to pump."""
        self._track_acks = False
        self._out_lock = threading.Lock()
        self._outstanding: dict[int, int] = {}
        """QoS >= 1 messages sent and not yet acknowledged: message id -> bytes."""
        self._outstanding_bytes = 0
        self._acked: deque[int] = deque()
        """Message ids paho reported published; filled by the network thread, emptied under _out_lock."""
        self._room = threading.Event()
        self._room_wanted = 0
        """While a sender waits for room: how many acknowledgements wake it (0: nobody waits)."""
        self._published = 0
        self._acknowledged = 0
        self._refused = 0
        self._dropped = 0
        self._drop_warning = _RateLimitedWarning("Dropped")
        self._refusal_warning = _RateLimitedWarning("Refused")
        self._tls_alerts = _TlsAlertRecorder()

    # ----------------------------------------------------------------- public API

    def __repr__(self) -> str:
        return (
            f"SG App: '{self.name}', connecting to host '{self.host}', port {self.port}. "
            f"Has {len(self._inputs)} input signals registered."
        )

    @property
    def is_connected(self) -> bool:
        """``True`` while the client has a working connection to the broker (an extension)."""
        return self._connected

    @property
    def counters(self) -> PublishCounters:
        """What happened to the messages sent so far (an extension): see :class:`PublishCounters`."""
        with self._out_lock:
            self._reap_acknowledgements()
            return PublishCounters(
                published=self._published,
                acknowledged=self._acknowledged,
                refused=self._refused,
                dropped=self._dropped,
                queued=len(self._outstanding),
                queued_bytes=self._outstanding_bytes,
            )

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

    def send_command(
        self,
        servicename: str,
        signalname: str,
        value: Any,
        send_command_as_retained: bool = False,
    ) -> None:
        """Publish ``str(value)`` on ``command/<servicename>/<signalname>``. Thread safe."""
        self._require_started("send_command")
        topic = build_topic(
            PREFIX_COMMAND,
            validate_name(servicename, "servicename"),
            validate_name(signalname, "signalname"),
        )
        self._publish(topic, str(value), retain=send_command_as_retained)

    def start(self, use_threaded_networking: bool = False, use_clean_session: bool = True) -> None:
        """Create the MQTT client and connect to the broker.

        Threaded: returns once connected, subscribed and announced, or once the
        first attempt failed (refused, unreachable), or after at most
        ``START_WAIT_TIME`` (1 s); the client keeps connecting in the background. Not threaded: the first
        :meth:`loop` call connects. Calling start() again restarts the client.
        """
        if self.mqttclient is not None:
            self.stop()
        self._check_bounds()
        self._use_threaded_networking = use_threaded_networking
        self._use_clean_session = use_clean_session
        self._stopping = False
        self._ready.reset()
        self._ready.settled.clear()
        self._events = queue.SimpleQueue()
        self.mqttclient = self._create_client()
        if use_threaded_networking:
            if self.callbacks_in_thread:
                self._start_callback_thread()
            self._connect_async(self.mqttclient)
            self.mqttclient.loop_start()
            # Returns when ready, or when the first attempt failed (the client keeps trying).
            self._ready.settled.wait(constants.START_WAIT_TIME)
        else:
            self._next_loop_connect = 0.0
            self._loop_connect_delay = constants.RECONNECT_DELAY_MIN

    def loop(self) -> None:
        """Run network activities once; call it often when not using threaded networking.

        Blocks until network traffic or for at most ``timeout`` seconds. While
        not connected it tries to connect, with a capped backoff between tries.
        """
        client = self._require_started("loop")
        self._loop_thread = threading.get_ident()
        if self._use_threaded_networking:
            self.logger.warning("loop() does nothing when using threaded networking")
            return
        if self._loop_socket_open or self._loop_try_connect(client):
            self._run_network_loop(client, self.timeout)
        self._run_pending_callbacks()

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
        self._deliver(event)
        self._run_pending_callbacks(_CALLBACK_BATCH)

    def _run_network_loop(self, client: mqtt.Client, timeout: float) -> None:
        """Loop mode: one round of paho's network loop; its callbacks only queue events."""
        self._in_network_loop = True
        try:
            rc = client.loop(timeout=timeout)
        finally:
            self._in_network_loop = False
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS and not self._stopping:
            self._loop_socket_open = False
            self._schedule_loop_reconnect()
            if self._connected:  # else _on_disconnect has already reported it
                self._mark_disconnected(f"network loop: {mqtt.error_string(rc)}")

    def _run_pending_callbacks(self, limit: int | None = None) -> None:
        handled = 0
        while limit is None or handled < limit:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            self._deliver(event)
            handled += 1
        self._flush_warnings()

    def stop(self) -> None:
        """Disconnect from the broker, after a resource's presence ``False`` is acknowledged."""
        client = self._require_started("stop")
        self._stopping = True
        was_connected = self._connected
        try:
            if self._connected:
                # Data first, then the goodbye: presence False comes after everything sent before stop().
                self._wait_until(client, lambda: not self._outstanding, constants.STOP_WAIT_TIME)
                self._publish_goodbye(client)
            client.disconnect()
            if self._use_threaded_networking:
                client.loop_stop()
        finally:
            self._connected = False
            self._loop_socket_open = False
            self.mqttclient = None
            self._ready.reset()
            self._forget_unacknowledged()
            self._stop_callback_thread()
        if was_connected:
            self._deliver_status(False)

    def get_descriptive_ascii_art(self) -> str:
        """Return a multi-line overview of the registered incoming and outgoing topics."""
        lines = [repr(self), "", "  Incoming topics:"]
        lines += [f"    --> {topic}" for topic in sorted(self._inputs)] or ["    (none)"]
        lines += ["", "  Outgoing topics:"]
        lines += [f"    <-- {topic}" for topic in self._outgoing_topics()] or ["    (none)"]
        return "\n".join(lines) + "\n"

    # ----------------------------------------------------- hooks for subclasses

    def _outgoing_topics(self) -> list[str]:
        return []

    def _announce(self, client: mqtt.Client) -> None:
        """Publish what must be published at every (re)connect; nothing for an App."""

    def _publish_goodbye(self, client: mqtt.Client) -> None:
        """Publish what must be delivered before a clean disconnect; nothing for an App."""

    def _configure_will(self, client: mqtt.Client) -> None:
        """Set the last will; an App has none."""

    def _after_callback(self, item: _Input, payload: str, result: Any) -> None:
        """Act on a callback's return value; the Resource echoes commands."""

    # ------------------------------------------------------------ registration

    def _register_input(self, item: _Input) -> None:
        topic = build_topic(item.messagetype, item.servicename, item.signalname)
        with self._state_lock:
            self._inputs[topic] = item
        client = self.mqttclient
        if client is not None and self._connected:
            client.subscribe(topic, qos=self.qos)

    # ------------------------------------------------------------------ client

    def _create_client(self) -> mqtt.Client:
        client_id = f"{self.name}-{os.getpid()}" if self._use_clean_session else self.name
        is_v5 = self.protocol == mqtt.MQTTv5
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if is_v5 else self._use_clean_session,
            protocol=self.protocol,
        )
        # enable_logger, not on_log: paho formats every packet line for on_log, which
        # halved QoS 0 throughput; the logger formats only what is enabled.
        self.logger.addFilter(_PAHO_NOISE)
        self.logger.addFilter(self._tls_alerts)
        client.enable_logger(self.logger)
        client.on_socket_open = self._on_socket_open
        client.max_queued_messages_set(0)  # the bound is ours (_publish_reliably), with a clear refusal
        self._track_acks = self.qos > 0
        if self._track_acks:
            client.on_publish = self._on_publish
        client.reconnect_delay_set(constants.RECONNECT_DELAY_MIN, constants.RECONNECT_DELAY_MAX)
        if self.certificate_directory is not None:
            client.tls_set_context(self._create_tls_context())
            if self.tls_insecure:
                client.tls_insecure_set(True)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        self._configure_will(client)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _create_tls_context(self) -> ssl.SSLContext:
        return create_tls_context(
            str(self.certificate_directory), self.tls_version, self.tls_insecure, self.logger,
            (self.CA_CERTS, self.CERTFILE, self.KEYFILE),
        )

    @property
    def broker_address(self) -> tuple[str, int]:
        """The ``(host, port)`` connected to, or tried next (an extension)."""
        addresses = broker_addresses(self.host, self.port)
        return addresses[self._address_index % len(addresses)]

    def _use_next_address(self, client: mqtt.Client) -> None:
        """After a failed or lost connection, point the client at the next address (with several)."""
        if len(broker_addresses(self.host, self.port)) < 2:
            return
        self._address_index += 1
        host, port = self.broker_address
        if self._use_threaded_networking:
            # paho refuses a new host while it is (re)connecting; connect_async is its way to
            # change it, and loop_forever's next reconnect goes there. loop() names it itself.
            self._connect_async(client)
        self.logger.info("Trying the next broker address, %s:%s", host, port)

    def _connect_async(self, client: mqtt.Client) -> None:
        client.connect_async(*self.broker_address, int(self.keepalive), **self._connect_options())

    def _connect_options(self) -> dict[str, Any]:
        if self.protocol != mqtt.MQTTv5:
            return {}
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 0 if self._use_clean_session else _SESSION_EXPIRY_PERSISTENT
        return {"clean_start": self._use_clean_session, "properties": properties}

    def _loop_try_connect(self, client: mqtt.Client) -> bool:
        """Try to connect in loop mode when the backoff allows; return True once connecting."""
        now = time.monotonic()
        if now < self._next_loop_connect:
            time.sleep(min(self.timeout, self._next_loop_connect - now))
            return False
        try:
            client.connect(*self.broker_address, int(self.keepalive), **self._connect_options())
        except (OSError, ssl.SSLError) as error:
            self._remember_connect_failure(f"cannot connect to {_shown(self.broker_address)}: {error}")
            self._use_next_address(client)
            self._schedule_loop_reconnect()
            return False
        self._loop_socket_open = True  # on_connect confirms or refutes it on CONNACK
        return True

    def _schedule_loop_reconnect(self) -> None:
        self._next_loop_connect = time.monotonic() + self._loop_connect_delay
        self._loop_connect_delay = min(self._loop_connect_delay * 2, constants.RECONNECT_DELAY_MAX)

    def _publish(self, topic: str, payload: str, retain: bool = False) -> mqtt.MQTTMessageInfo | None:
        """Publish a user's message: QoS 0 is sent or counted as dropped; QoS >= 1 is queued or refused."""
        client = self.mqttclient
        if client is None:
            raise ValueError(f"{self.name}: start() the {self._KIND.lower()} before publishing")
        qos = self.qos
        if qos > 0:
            return self._publish_reliably(client, topic, payload, qos, retain)
        info = client.publish(topic, payload, qos=0, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            with self._out_lock:
                self._published += 1
                if len(self._acked) > 1024:  # acknowledgements tracked since an earlier qos >= 1
                    self._reap_acknowledgements()
            return info
        with self._out_lock:
            self._dropped += 1
        why = "not connected to the broker and qos is 0" if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN else (
            mqtt.error_string(info.rc)
        )
        self._drop_warning.event(self.logger, topic, why)
        return info

    def _publish_reliably(
        self, client: mqtt.Client, topic: str, payload: str, qos: int, retain: bool
    ) -> mqtt.MQTTMessageInfo:
        """Queue a QoS >= 1 message within the bounds, waiting for room while connected; else PublishError."""
        size = len(topic) + (len(payload) if isinstance(payload, bytes) or payload.isascii() else len(payload.encode()))
        if not self._track_acks:
            self._track_acks = True  # qos was raised after start()
            client.on_publish = self._on_publish
        deadline: float | None = None
        while True:
            with self._out_lock:
                self._reap_acknowledgements()
                full = self._queue_full_for(size)
                if full is None:
                    info = client.publish(topic, payload, qos=qos, retain=retain)
                    if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                        self._outstanding[info.mid] = size  # NO_CONN: paho keeps it for the reconnect
                        self._outstanding_bytes += size
                        self._published += 1
                        return info
            if full is None:
                raise self._refusal(topic, f"paho refused it ({mqtt.error_string(info.rc)})")
            if not self._connected:
                raise self._refusal(topic, f"{full}, and the client is not connected to the broker")
            if not self._can_wait_for_room():
                raise self._refusal(topic, f"{full}, and this thread runs the network, so it cannot wait for room")
            now = time.monotonic()
            deadline = now + self.publish_timeout if deadline is None else deadline
            if now >= deadline:
                raise self._refusal(
                    topic, f"{full}, and no room was made within publish_timeout = {self.publish_timeout:g} s"
                )
            self._wait_for_room(client, min(deadline - now, _WAIT_SLICE), lambda: self._queue_full_for(size) is None)

    def _queue_full_for(self, size: int) -> str | None:
        """Why one more message of ``size`` bytes does not fit (under _out_lock), or None."""
        waiting = len(self._outstanding)
        if waiting >= self.max_queued_messages:
            return f"{waiting:,} messages already wait for the broker's acknowledgement (max_queued_messages)"
        if waiting and self._outstanding_bytes + size > self.max_queued_bytes:
            return (
                f"{self._outstanding_bytes:,} bytes already wait for the broker's acknowledgement "
                f"(max_queued_bytes = {self.max_queued_bytes:,})"
            )
        return None

    def _reap_acknowledgements(self) -> None:
        """Take the acknowledgements the network thread reported off the queue (under _out_lock)."""
        acked, outstanding = self._acked, self._outstanding
        while acked:
            size = outstanding.pop(acked.popleft(), None)
            if size is not None:
                self._outstanding_bytes -= size
                self._acknowledged += 1

    def _can_wait_for_room(self) -> bool:
        if self._use_threaded_networking:
            return threading.get_ident() != self._network_thread
        return not (self._pumps_network() and self._in_network_loop)

    def _pumps_network(self) -> bool:
        """Loop mode: whether this thread may run paho's loop itself (the one that calls loop(), or any before)."""
        return not self._use_threaded_networking and self._loop_thread in (None, threading.get_ident())

    def _wait_for_room(self, client: mqtt.Client, timeout: float, done: Callable[[], bool]) -> None:
        """Wait for acknowledgements until ``done()`` (checked under _out_lock), at most ``timeout``:
        woken by the thread that runs the network, or in loop mode, on the thread that calls
        loop(), by driving the network itself."""
        if not self._pumps_network():
            with self._out_lock:
                self._reap_acknowledgements()
                if done():
                    return
                # Wake after a batch of acknowledgements, not after each: one wake-up per
                # message would cost more than the send itself (docs/benchmarks.md).
                self._room_wanted = max(1, min(_ROOM_BATCH, len(self._outstanding) // 10))
                self._room.clear()
            try:
                self._room.wait(timeout)
            finally:
                self._room_wanted = 0
        else:
            self._run_network_loop(client, timeout)

    def _wait_until(self, client: mqtt.Client, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._connected and time.monotonic() < deadline:
            with self._out_lock:
                self._reap_acknowledgements()
                if done():
                    return
            if not self._can_wait_for_room():
                return
            self._wait_for_room(client, min(deadline - time.monotonic(), _WAIT_SLICE), done)

    def _forget_unacknowledged(self) -> None:
        """At stop(): what the broker never acknowledged is lost; count it and say so."""
        with self._out_lock:
            self._reap_acknowledgements()
            lost = len(self._outstanding)
            self._dropped += lost
            self._outstanding.clear()
            self._outstanding_bytes = 0
            self._acked.clear()
        if lost:
            self.logger.warning("%d QoS >= 1 message(s) were not acknowledged by the broker before stop(): lost", lost)

    def _refusal(self, topic: str, reason: str) -> PublishError:
        with self._out_lock:
            self._refused += 1
        self._refusal_warning.event(self.logger, topic, reason)
        return PublishError(topic, reason)

    def _flush_warnings(self) -> None:
        now = time.monotonic()
        self._drop_warning.flush(self.logger, now)
        self._refusal_warning.flush(self.logger, now)

    def _check_bounds(self) -> None:
        limit = constants.MAX_QUEUED_MESSAGES_LIMIT
        if not isinstance(self.max_queued_messages, int) or not 1 <= self.max_queued_messages <= limit:
            raise ValueError(
                f"max_queued_messages must be a whole number from 1 to {limit:,} (paho's message ids run out at "
                f"65,535), not {self.max_queued_messages!r}"
            )
        if not isinstance(self.max_queued_bytes, int) or self.max_queued_bytes < 1:
            raise ValueError(f"max_queued_bytes must be a positive whole number, not {self.max_queued_bytes!r}")
        if not isinstance(self.publish_timeout, int | float) or self.publish_timeout < 0:
            raise ValueError(f"publish_timeout must be a number of seconds >= 0, not {self.publish_timeout!r}")

    # --------------------------------------------------------- callbacks

    def _start_callback_thread(self) -> None:
        events = self._events
        self._callback_thread = threading.Thread(
            target=self._run_callback_thread, args=(events,), name=f"sgframework-{self.name}-callbacks", daemon=True
        )
        self._callback_thread.start()

    def _run_callback_thread(self, events: queue.SimpleQueue[tuple[str, Any]]) -> None:
        while True:
            try:
                event = events.get(timeout=1.0)
            except queue.Empty:
                self._flush_warnings()
                continue
            if event is _STOP_EVENT:
                return
            self._deliver(event)
            self._flush_warnings()

    def _stop_callback_thread(self) -> None:
        thread, self._callback_thread = self._callback_thread, None
        if thread is None:
            return
        self._events.put(_STOP_EVENT)
        if thread is not threading.current_thread():
            thread.join(constants.STOP_WAIT_TIME)

    def _deliver(self, event: tuple[str, Any]) -> None:
        kind, value = event
        if kind == _MESSAGE:
            try:
                self._handle_message(value)
            except Exception:
                self.logger.exception("Error while handling a message on %r", value.topic)
        elif kind == _STATUS:
            self._deliver_status(value)

    def _require_started(self, method: str) -> mqtt.Client:
        if self.mqttclient is None:
            raise ValueError(f"{self.name}: call start() before {method}()")
        return self.mqttclient

    # ---------------------------------------------------------- paho callbacks
    # Every callback catches everything: an exception escaping into paho would
    # end the network loop and the client would silently stop receiving.

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        try:
            if reason.is_failure:
                self._remember_connect_failure(f"the broker refused the connection: {reason}")
                self._connection_refused = True
                self._mark_disconnected(None)
                return
            self._network_thread = threading.get_ident()
            self.last_connection_error = None
            self._connected = True
            self._loop_connect_delay = constants.RECONNECT_DELAY_MIN
            self.logger.info("Connected to the broker at %s", _shown(self.broker_address))
            # With qos 0, on_publish only while the announcements are in flight: paho's
            # per-message callback machinery costs QoS 0 throughput (docs/benchmarks.md).
            client.on_publish = self._on_publish
            self._ready.begin()
            self._subscribe_all(client)
            self._announce(client)
            if self._ready.finish():
                self._became_ready(client)
        except Exception:
            self.logger.exception("Error while handling the connection to the broker")

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this from inside its ``except OSError`` block: the error is still active.
        error = sys.exc_info()[1]
        detail = f": {error}" if error is not None else ""
        self._remember_connect_failure(f"cannot connect to {_shown(self.broker_address)}{detail}")
        self._use_next_address(client)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        try:
            if self._stopping:
                self._connected = False
                return
            if not self._connected:
                # Closed before a successful CONNACK: a refusal already said why;
                # otherwise the broker hung up, e.g. a TLS listener and no TLS.
                alert = self._tls_alerts.take() or self._probe_tls_alert()
                if alert is not None and not self._connection_refused:
                    self._remember_connect_failure(
                        f"the broker at {_shown(self.broker_address)} refused the TLS handshake: {alert}"
                    )
                elif not self._connection_refused:
                    hint = (
                        "if it expects TLS, set certificate_directory"
                        if self.certificate_directory is None
                        else "it may have refused this client's certificate (expired, not yet valid, "
                        "or signed by a CA it does not trust)"
                    )
                    self._remember_connect_failure(
                        f"the broker at {_shown(self.broker_address)} closed the connection before accepting it "
                        f"({reason}); {hint}; see the broker's log"
                    )
                self._connection_refused = False
                self._ready.reset()
                self._use_next_address(client)
                return
            detail = None if reason == 0 else f"disconnected from the broker: {reason}"
            self._mark_disconnected(detail)
            self._use_next_address(client)
        except Exception:
            self.logger.exception("Error while handling a disconnection")

    def _probe_tls_alert(self) -> str | None:
        """After a silent refusal under TLS, ask the broker again why, without sending anything.

        The alert with the broker's verdict on the client's certificate is often lost: the
        broker closes while the client's CONNECT sits unread, and the kernel's reset drops
        the alert. A handshake followed by a read alone gets it reliably.
        """
        if self.certificate_directory is None:
            return None
        host, port = self.broker_address  # with a list of brokers, the one that refused
        try:
            context = self._create_tls_context()
            with socket.create_connection((host, port), timeout=_ALERT_PROBE_TIMEOUT) as raw, \
                    context.wrap_socket(raw, server_hostname=host) as tls:
                tls.recv(1)
        except ssl.SSLError as error:
            return describe_tls_alert(error)
        except (OSError, ValueError):
            return None
        return None

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # paho does not disable Nagle: a QoS 1 echo (PUBACK + PUBLISH, two small writes)
        # then waits ~40 ms for the broker's delayed ACK.
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            self.logger.debug("Could not set TCP_NODELAY on %r", sock)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        for reason in reasons:
            if getattr(reason, "is_failure", False):
                self.logger.error("The broker refused a subscription: %s", reason)
        if self._ready.done(mid):
            self._became_ready(client)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        # Once per acknowledgement, on paho's thread: only what is needed (an Event.set() or a
        # lock per message costs QoS 1 throughput, docs/benchmarks.md).
        self._acked.append(mid)
        if self._room_wanted and len(self._acked) >= self._room_wanted:
            self._room.set()
        if not self._ready.ready.is_set() and self._ready.done(mid):
            self._became_ready(client)

    def _became_ready(self, client: mqtt.Client) -> None:
        """Subscriptions and announcements of this connection are acknowledged: tell the user."""
        if not self._track_acks:
            client.on_publish = None
        self._notify_connection_status(True)
        if self._use_threaded_networking and not self.callbacks_in_thread:
            self._ready.settled.set()  # the application runs the callback later, in run_callbacks()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._events.put((_MESSAGE, message))  # user callbacks never run on paho's network loop

    # ---------------------------------------------------------------- helpers

    def _subscribe_all(self, client: mqtt.Client) -> None:
        with self._state_lock:
            topics = [(topic, self.qos) for topic in self._inputs]
        if topics:
            result, mid = client.subscribe(topics)
            if result == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                self._ready.expect(mid)

    def _publish_tracked(self, client: mqtt.Client, topic: str, payload: str, retain: bool) -> None:
        """Publish during (re)connection and count it towards readiness."""
        info = client.publish(topic, payload, qos=self.qos, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS and not info.is_published():
            self._ready.expect(info.mid)

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

    def _notify_connection_status(self, connected: bool) -> None:
        """Queue a connection change for the thread that runs the callbacks."""
        self._events.put((_STATUS, connected))

    def _deliver_status(self, connected: bool) -> None:
        """Call the user's callback on a change: True once ready, False only after a True."""
        try:
            if connected == self._reported_connected:
                return
            self._reported_connected = connected
            callback = self.on_broker_connectionstatus_info
            if callback is None:
                return
            try:
                callback(self, connected)
            except Exception:
                self.logger.exception("on_broker_connectionstatus_info raised an exception")
        finally:
            if connected:
                self._ready.settled.set()  # after the callback: a threaded start() returns with the user told

    def _mark_disconnected(self, detail: str | None) -> None:
        was_connected = self._connected
        self._connected = False
        self._ready.reset()
        if detail:
            self.logger.warning("%s; reconnecting", detail.capitalize())
        if was_connected:
            self._notify_connection_status(False)

    def _remember_connect_failure(self, text: str) -> None:
        hint = ""
        if "not authorized" in text.lower() or "bad user name or password" in text.lower():
            hint = " (check username and password)"
        elif "identifier" in text.lower() and self.protocol == mqtt.MQTTv31:
            hint = " (MQTTv31 allows client ids of at most 23 characters: use MQTTv311)"
        message = text + hint
        if message != self.last_connection_error:
            self.logger.error("%s", message)
        self.last_connection_error = message
        self._ready.settled.set()


class Resource(App):
    """Resource framework for the Secure Gateway.

    Receives commands on ``command/<name>/<signal>`` and sends data on
    ``data/<name>/<signal>``. Announces its commands and data with retained
    ``commandavailable``/``dataavailable`` messages and its presence with a
    retained ``resourceavailable/<name>/presence``: ``True`` at every
    (re)connect, ``False`` on :meth:`stop` and, as last will, by the broker
    when the connection is lost.
    """

    _KIND = "Resource"

    def __init__(
        self,
        name: str,
        host: str | list[str],
        port: int | str = constants.DEFAULT_PORT,
        certificate_directory: str | None = None,
    ) -> None:
        super().__init__(name, host, port, certificate_directory)
        self._outputs: dict[str, _Output] = {}

    def __repr__(self) -> str:
        return (
            f"SG Resource: '{self.name}', connecting to host '{self.host}', port {self.port}. "
            f"Has {len(self._inputs)} incoming and {len(self._outputs)} outgoing topics registered."
        )

    @property
    def presence_topic(self) -> str:
        """``resourceavailable/<name>/presence``, the topic of the last will."""
        return build_topic(PREFIX_RESOURCEAVAILABLE, self.name, SUFFIX_PRESENCE)

    @property
    def announced_topics(self) -> list[str]:
        """Every ``commandavailable``/``dataavailable`` topic this resource announces (an extension)."""
        with self._state_lock:
            commands = [item for item in self._inputs.values() if item.messagetype == PREFIX_COMMAND]
            data = dict.fromkeys([item.signalname for item in commands if item.echo] + list(self._outputs))
        # An echo is data: like the original, an echoed command is announced on dataavailable/ too.
        return [build_topic(PREFIX_COMMANDAVAILABLE, self.name, item.signalname) for item in commands] + [
            build_topic(PREFIX_DATAAVAILABLE, self.name, signal) for signal in data
        ]

    def register_incoming_command(
        self,
        signalname: str,
        callback: InputCallback,
        callback_on_change_only: bool = False,
        echo: bool = True,
        send_echo_as_retained: bool = False,
        defaultvalue: Any = None,
    ) -> None:
        """Call ``callback`` for commands on ``command/<name>/<signalname>``.

        With ``echo`` the callback's return value (as ``str``), or the command
        payload when it returns ``None``, is published on ``data/<name>/<signalname>``.
        A ``defaultvalue`` other than ``None`` is published there at every (re)connect
        and is updated by each echo.
        """
        item = _Input(
            PREFIX_COMMAND,
            self.name,
            validate_name(signalname, "signalname"),
            callback,
            callback_on_change_only=callback_on_change_only,
            echo=echo,
            send_echo_as_retained=send_echo_as_retained,
            defaultvalue=None if defaultvalue is None else str(defaultvalue),
        )
        self._register_input(item)
        self._announce_if_connected(build_topic(PREFIX_COMMANDAVAILABLE, self.name, signalname))

    def register_outgoing_data(
        self, signalname: str, defaultvalue: Any = None, send_data_as_retained: bool = False
    ) -> None:
        """Announce ``data/<name>/<signalname>``; send on it with :meth:`send_data`.

        A ``defaultvalue`` other than ``None`` is published at every (re)connect
        and is updated by :meth:`send_data`.
        """
        validate_name(signalname, "signalname")
        with self._state_lock:
            self._outputs[signalname] = _Output(
                signalname, None if defaultvalue is None else str(defaultvalue), send_data_as_retained
            )
        self._announce_if_connected(build_topic(PREFIX_DATAAVAILABLE, self.name, signalname))

    def unregister_outgoing_data(self, signalname: str) -> None:
        """Forget an outgoing data signal: no more ``dataavailable`` or default for it (an extension)."""
        with self._state_lock:
            self._outputs.pop(signalname, None)

    def send_data(self, signalname: str, value: Any) -> None:
        """Publish ``str(value)`` on ``data/<name>/<signalname>``. Thread safe.

        An unregistered signal is sent non-retained, with a warning.
        """
        self._require_started("send_data")
        payload = str(value)
        output = self._outputs.get(signalname)  # one dict lookup: atomic, no lock needed to read
        if output is None:
            topic = build_topic(PREFIX_DATA, self.name, validate_name(signalname, "signalname"))
            self.logger.warning("send_data() on %r, which is not registered with register_outgoing_data()", topic)
            self._publish(topic, payload)
            return
        if output.defaultvalue is not None:
            with self._state_lock:
                output.defaultvalue = payload
        elif output.send_data_as_retained:
            output.last_retained = payload
        # A registered name was validated by register_outgoing_data(): this is the hot path.
        self._publish(build_topic(PREFIX_DATA, self.name, signalname), payload, retain=output.send_data_as_retained)

    # ---------------------------------------------------- App hooks overridden

    def _outgoing_topics(self) -> list[str]:
        with self._state_lock:
            echoes = [
                build_topic(PREFIX_DATA, self.name, item.signalname)
                for item in self._inputs.values()
                if item.messagetype == PREFIX_COMMAND and item.echo
            ]
            data = [build_topic(PREFIX_DATA, self.name, name) for name in self._outputs]
        return sorted(set(echoes + data)) + sorted(self.announced_topics) + [self.presence_topic]

    def _configure_will(self, client: mqtt.Client) -> None:
        client.will_set(self.presence_topic, PAYLOAD_FALSE, qos=self.qos, retain=True)

    def _announce(self, client: mqtt.Client) -> None:
        self._publish_tracked(client, self.presence_topic, PAYLOAD_TRUE, retain=True)
        for topic in self.announced_topics:
            self._publish_tracked(client, topic, PAYLOAD_TRUE, retain=True)
        for topic, payload, retain in self._defaults():
            self._publish_tracked(client, topic, payload, retain)

    def _defaults(self) -> list[tuple[str, str, bool]]:
        with self._state_lock:
            commands = [  # as the original: a command's default is its echo's initial value, so echoed only
                (build_topic(PREFIX_DATA, self.name, item.signalname), item.defaultvalue, item.send_echo_as_retained)
                for item in self._inputs.values()
                if item.messagetype == PREFIX_COMMAND and item.echo and item.defaultvalue is not None
            ]
            data = [
                (build_topic(PREFIX_DATA, self.name, out.signalname), out.defaultvalue, out.send_data_as_retained)
                for out in self._outputs.values()
                if out.defaultvalue is not None
            ]
        return commands + data  # type: ignore[return-value]

    def _retained_values(self) -> list[tuple[str, str, bool]]:
        """The last retained value of each signal without a default (what the broker keeps for it)."""
        with self._state_lock:
            echoes = [
                (build_topic(PREFIX_DATA, self.name, item.signalname), item.last_retained_echo, True)
                for item in self._inputs.values()
                if item.defaultvalue is None and item.last_retained_echo is not None
            ]
            data = [
                (build_topic(PREFIX_DATA, self.name, out.signalname), out.last_retained, True)
                for out in self._outputs.values()
                if out.defaultvalue is None and out.last_retained is not None
            ]
        return echoes + data  # type: ignore[return-value]

    def _publish_goodbye(self, client: mqtt.Client) -> None:
        # QoS 1 whatever qos is, as the original: the goodbye must arrive, and stop() waits for it.
        info = client.publish(self.presence_topic, PAYLOAD_FALSE, qos=1, retain=True)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return
        if self._use_threaded_networking:
            if self._can_wait_for_room():
                info.wait_for_publish(constants.STOP_WAIT_TIME)
            return
        deadline = time.monotonic() + constants.STOP_WAIT_TIME
        while not info.is_published() and time.monotonic() < deadline and not self._in_network_loop:
            if client.loop(timeout=0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return

    def _after_callback(self, item: _Input, payload: str, result: Any) -> None:
        if item.messagetype != PREFIX_COMMAND or not item.echo:
            return
        echo = payload if result is None else str(result)
        with self._state_lock:
            if item.defaultvalue is not None:
                item.defaultvalue = echo
            elif item.send_echo_as_retained:
                item.last_retained_echo = echo
        topic = build_topic(PREFIX_DATA, self.name, item.signalname)
        with contextlib.suppress(PublishError):  # counted as refused and logged, rate-limited: no caller to tell
            self._publish(topic, echo, retain=item.send_echo_as_retained)

    def _announce_if_connected(self, topic: str) -> None:
        client = self.mqttclient
        if client is not None and self._connected:
            client.publish(topic, PAYLOAD_TRUE, qos=self.qos, retain=True)

    # ------------------------------------------------ rebirth (an extension)

    def republish(self) -> int:
        """Publish again what a new subscriber finds after a (re)connect; return how many messages.

        Presence ``True``, every ``commandavailable``/``dataavailable``
        announcement, and every current value that has one: the default of a
        command or data signal, as updated by the last echo or :meth:`send_data`.
        For a dashboard or bridge that lost its retained state (Sparkplug's
        Rebirth). Nothing is sent, and 0 returned, while not connected.
        """
        client = self.mqttclient
        if client is None or not self._connected:
            return 0
        messages = [(self.presence_topic, PAYLOAD_TRUE, True)]
        messages += [(topic, PAYLOAD_TRUE, True) for topic in self.announced_topics]
        messages += self._defaults() + self._retained_values()
        for topic, payload, retain in messages:
            client.publish(topic, payload, qos=self.qos, retain=retain)
        return len(messages)


class _PahoNoiseFilter(logging.Filter):
    """Drops paho 2.2's "Client is not connected" error.

    paho's network thread logs it at every clean disconnect and after every failed
    connection attempt; the library reports those itself (``last_connection_error``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("Client is not connected"))


_PAHO_NOISE = _PahoNoiseFilter()

_TLS_ALERTS = {
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "it finds this client's certificate expired (or not yet valid by its clock)",
    "TLSV1_ALERT_UNKNOWN_CA": "it does not trust the CA that signed this client's certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "it rejects this client's certificate (OpenSSL says so for one not yet valid too)",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "this client's certificate is not for client authentication",
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "this client's certificate is revoked",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "it requires a client certificate",
    "TLSV1_ALERT_ACCESS_DENIED": "it denies this client access",
}


_ALERT_PROBE_TIMEOUT = 0.5


def describe_tls_alert(error: BaseException) -> str | None:
    """``TLSV1_ALERT_UNKNOWN_CA (it does not trust ...)`` for a TLS alert received from the peer, else None."""
    reason = str(getattr(error, "reason", "") or "")
    if not isinstance(error, ssl.SSLError) or "ALERT" not in reason:
        return None
    return f"{reason} ({_TLS_ALERTS[reason]})" if reason in _TLS_ALERTS else reason


class _TlsAlertRecorder(logging.Filter):
    """Keeps the TLS alert a broker sent, which paho logs ("failed to receive on socket") and then drops.

    With TLS 1.3 the broker checks the client's certificate after the client considers the
    handshake done, so its verdict arrives as an alert on the first read. Attached to the
    client's logger; it never suppresses a record.
    """

    def __init__(self) -> None:
        super().__init__()
        self._alert: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            if isinstance(arg, BaseException) and (alert := describe_tls_alert(arg)) is not None:
                self._alert = alert
        return True

    def take(self) -> str | None:
        """The alert received since the last call, or None."""
        alert, self._alert = self._alert, None
        return alert


def create_tls_context(
    certificate_directory: str,
    tls_version: int = ssl.PROTOCOL_TLS_CLIENT,
    insecure: bool = False,
    logger: logging.Logger | None = None,
    file_names: tuple[str, str, str] = (constants.CA_CERTS, constants.CERTFILE, constants.KEYFILE),
) -> ssl.SSLContext:
    """A client context for mutual TLS 1.2+ with the CA, certificate and key in ``certificate_directory``.

    ``insecure`` skips the check that the broker's certificate names the host;
    the chain is still verified. A missing file raises ``FileNotFoundError`` naming it.
    """
    paths = [os.path.join(certificate_directory, name) for name in file_names]
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Certificate file not found: {path} (certificate_directory must hold {', '.join(file_names[:2])} "
                f"and {file_names[2]})"
            )
    ca_certs, certfile, keyfile = paths
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_certs)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls_version in _LEGACY_TLS_VERSIONS:
        (logger or logging.getLogger("sgframework")).warning(
            "tls_version %r is obsolete and refused by current brokers; using TLS 1.2 or newer", tls_version
        )
    elif tls_version == getattr(ssl, "PROTOCOL_TLSv1_2", None):
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    if insecure:
        context.check_hostname = False
    return context


def _shown(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def _parse_port(port: int | str) -> int:
    try:
        number = int(port)
    except (TypeError, ValueError):
        raise ValueError(f"The port must be a whole number from 1 to 65535, not {port!r}") from None
    if not 1 <= number <= 65535:
        raise ValueError(f"The port must be a whole number from 1 to 65535, not {port!r}")
    return number
