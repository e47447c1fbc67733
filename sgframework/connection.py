"""The broker connection: addresses and failover, TLS, connect and reconnect, readiness, status callbacks.

A mixin of :class:`sgframework.App`: the state it uses is created by ``App.__init__``.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from threading import get_ident
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sgframework import constants
from sgframework.addresses import broker_addresses
from sgframework.inbound import _STATUS
from sgframework.reconnect import ReconnectPolicy
from sgframework.tls import _ALERT_PROBE_TIMEOUT, _TlsAlertRecorder, create_tls_context, describe_tls_alert

ConnectionStatusCallback = Callable[[Any, bool], Any]


_SESSION_EXPIRY_PERSISTENT = 0xFFFFFFFF


_IDLE_SLACK = 0.01
"""Seconds past a keepalive deadline that the network thread wakes, so that paho finds it due."""


class _Client(mqtt.Client):
    """paho's client, whose threaded network loop sleeps until the next keepalive deadline, and runs the
    user's callbacks after each network step (threaded mode, ``callbacks_in_thread``).

    ``loop_forever`` (paho's thread) waits at most 1 s for the socket, so an idle client woke
    every second. Its ``select`` also wakes when another thread publishes or subscribes
    (paho writes to its socket pair) and when the broker sends: the only other work is the
    keepalive, whose deadline this computes as paho's ``_check_keepalive`` does.
    """

    log_debug = False
    """Whether paho's per-packet debug lines are passed to the logger; set from its level at each (re)connect."""

    def _easy_log(self, level: int, fmt: str, *args: Any) -> None:
        # paho logs every packet at debug level; handing each to logging.Logger.log just to be
        # discarded cost 5-7 % of QoS 0 throughput (bench/framework.py (a)).
        if level != mqtt.MQTT_LOG_DEBUG or self.log_debug:
            super()._easy_log(level, fmt, *args)

    after_round: Callable[[], None] | None = None
    """Threaded: runs what one network round queued (the user's callbacks), on paho's thread, outside paho's
    loop: there a callback may send and wait for room, while the relief thread pumps (sgframework.inbound)."""

    connack_deadline: float | None = None
    """When (``time.monotonic()``) the CONNECT under way is given up unless its CONNACK has come; ``None``:
    no limit but paho's keepalive. The threaded network wait ends by then (sgframework.reconnect)."""

    on_connack_overdue: Callable[[mqtt.Client], None] | None = None
    """Called on the thread running the network step once ``connack_deadline`` has passed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.network_lock = threading.Lock()
        """Held by the thread running paho's network step: paho's own thread, or the relief thread."""
        self.stepping_thread: int | None = None
        """The thread inside paho's network step now: code called from there cannot wait for room."""

    def _loop(self, timeout: float = 1.0) -> MQTTErrorCode:
        if self._thread is None:  # loop mode: App.loop() passes its own timeout
            return super()._loop(timeout)
        keepalive = self._keepalive
        if keepalive:
            # Two float reads, atomic under the GIL: no need for paho's _msgtime_mutex on this hot path.
            last = min(self._last_msg_out, self._last_bytes_received)
            timeout = min(max(0.0, last + keepalive - time.monotonic()) + _IDLE_SLACK, constants.IDLE_WAIT_MAX)
        else:
            timeout = constants.IDLE_WAIT_MAX
        deadline = self.connack_deadline
        if deadline is not None:
            timeout = min(timeout, max(0.0, deadline - time.monotonic()) + _IDLE_SLACK)
        with self.network_lock:
            self.stepping_thread = get_ident()
            try:
                rc = super()._loop(timeout)
            finally:
                self.stepping_thread = None
            if self.connack_deadline is not None:
                self._check_connack_deadline()
        if self.after_round is not None:
            self.after_round()
        return rc

    def _check_connack_deadline(self) -> None:
        deadline = self.connack_deadline
        if deadline is not None and time.monotonic() >= deadline and self.on_connack_overdue is not None:
            self.on_connack_overdue(self)

    def relieve(self, timeout: float) -> MQTTErrorCode | None:
        """One network step on behalf of paho's thread while it runs a long callback; None if it is pumping."""
        if not self.network_lock.acquire(timeout=timeout):
            return None
        self.stepping_thread = get_ident()
        try:
            rc = super()._loop(timeout)
            if self.connack_deadline is not None:
                self._check_connack_deadline()
            return rc
        finally:
            self.stepping_thread = None
            self.network_lock.release()

    def loop_stop(self) -> MQTTErrorCode:
        """paho's loop_stop(), but a callback that hangs on paho's thread does not hang stop() too."""
        thread = self._thread
        if thread is None:
            return MQTTErrorCode.MQTT_ERR_INVAL
        self._thread_terminate = True
        if thread is not threading.current_thread():
            thread.join(constants.STOP_WAIT_TIME)
        return MQTTErrorCode.MQTT_ERR_SUCCESS


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


class Connection:
    """Connects to the broker (the next address after a failure), says why a connection failed, reports readiness."""

    def _init_connection(self) -> None:
        """The connection's own state (called by ``App.__init__``)."""
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
        # a bad address has failed in App.__init__ already
        self._reconnect = ReconnectPolicy(len(broker_addresses(self.host, self.port)))
        self._connack_wait: float | None = None
        """The CONNACK wait of the attempt under way (sgframework.reconnect); None: paho's keepalive limit."""
        self._connack_timed_out = False
        self._socket_opened_at = 0.0
        self._failure_noted = False
        """Loop mode: the failure of the attempt under way has moved the policy on (see _run_network_loop)."""
        self._in_network_loop = False
        """Loop mode: True while paho's loop runs (a send from inside it cannot pump the network)."""
        self._loop_thread: int | None = None
        """Loop mode: the thread that calls loop(); a send from another thread waits for it to pump."""
        self._tls_alerts = _TlsAlertRecorder()

    @property
    def is_connected(self) -> bool:
        """``True`` while the client has a working connection to the broker (an extension)."""
        return self._connected

    @property
    def broker_address(self) -> tuple[str, int]:
        """The ``(host, port)`` connected to, or tried next (an extension)."""
        addresses = broker_addresses(self.host, self.port)
        return addresses[self._reconnect.index % len(addresses)]

    def _restart_reconnect(self) -> None:
        """At start(): no backoff and no outage under way; the CONNACK wait is bounded by this start's keepalive."""
        self._reconnect.keepalive = float(self.keepalive)
        self._reconnect.start()
        self._next_loop_connect = 0.0

    def _create_client(self) -> mqtt.Client:
        client_id = f"{self.name}-{os.getpid()}" if self._use_clean_session else self.name
        is_v5 = self.protocol == mqtt.MQTTv5
        client = _Client(
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
        client.log_debug = self.logger.isEnabledFor(logging.DEBUG)
        client.on_socket_open = self._on_socket_open
        client.on_connack_overdue = self._give_up_unanswered_connect
        client.max_queued_messages_set(0)  # the bound is ours (_publish_reliably), with a clear refusal
        # each wait after a failure is the ReconnectPolicy's, set by _use_next_address
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

    def _use_next_address(self, client: mqtt.Client) -> None:
        """After a failed or lost connection: the next address and the wait before it (sgframework.reconnect)."""
        self._failure_noted = True
        delay = self._reconnect.failed()
        if self._use_threaded_networking:
            # paho's loop_forever waits this long (its _reconnect_wait) before its next reconnect()
            client.reconnect_delay_set(delay, delay)  # type: ignore[arg-type]  # paho takes floats
        else:
            self._next_loop_connect = time.monotonic() + delay
        if not self._reconnect.several:
            return
        host, port = self.broker_address
        if self._use_threaded_networking:
            # paho refuses a new host while it is (re)connecting; connect_async is its way to
            # change it, and loop_forever's next reconnect goes there. loop() names it itself.
            self._connect_async(client)
        self.logger.info("Trying the next broker address, %s:%s, in %.1f s", host, port, delay)

    def _watch_connack(self, client: mqtt.Client, sock: Any) -> None:
        """A CONNECT is being sent on ``sock``: set the moment it is given up unless its CONNACK has come."""
        self._socket_opened_at = time.monotonic()
        self._failure_noted = False
        self._connack_timed_out = False
        self._connack_wait = wait = self._reconnect.connack_wait()
        if isinstance(client, _Client):
            client.connack_deadline = None if wait is None else self._socket_opened_at + wait

    def _network_timeout(self, client: mqtt.Client) -> float:
        """Loop mode: paho's loop timeout, shortened so that an unanswered CONNECT is given up in time."""
        deadline = client.connack_deadline if isinstance(client, _Client) else None
        if deadline is None or self._connected:
            return float(self.timeout)
        return min(float(self.timeout), max(0.01, deadline - time.monotonic()))

    def _give_up_unanswered_connect(self, client: mqtt.Client) -> None:
        """Shut down a socket whose CONNECT went unanswered past its deadline; paho then reports it lost.

        Runs on the thread running the network step (paho's, the relief thread's, or loop()'s), so the
        socket cannot be replaced meanwhile. _on_disconnect then moves on to the next address.
        """
        if not isinstance(client, _Client) or client.connack_deadline is None:
            return
        if self._connected or self._stopping or time.monotonic() < client.connack_deadline:
            return
        client.connack_deadline = None
        current = client.socket()
        if current is None:
            return
        self._connack_timed_out = True
        try:
            socket.socket.shutdown(current, socket.SHUT_RDWR)  # type: ignore[arg-type]  # the plain socket's, under TLS too
        except (OSError, TypeError):
            self.logger.debug("Could not close the unanswered connection %r", current)

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
            return False
        self._loop_socket_open = True  # on_connect confirms or refutes it on CONNACK
        return True

    def _run_network_loop(self, client: mqtt.Client, timeout: float) -> None:
        """Loop mode: one round of paho's network loop; its callbacks only queue events."""
        self._in_network_loop = True
        try:
            rc = client.loop(timeout=timeout)
        finally:
            self._in_network_loop = False
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS and not self._stopping:
            self._loop_socket_open = False
            if not self._failure_noted:  # else _on_disconnect has already moved on
                self._use_next_address(client)
            if self._connected:  # else _on_disconnect has already reported it
                self._mark_disconnected(f"network loop: {mqtt.error_string(rc)}")

    def _announce(self, client: mqtt.Client) -> None:
        """Publish what must be published at every (re)connect; nothing for an App."""

    def _publish_goodbye(self, client: mqtt.Client) -> None:
        """Publish what must be delivered before a clean disconnect; nothing for an App."""

    def _configure_will(self, client: mqtt.Client) -> None:
        """Set the last will; an App has none."""

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if isinstance(client, _Client):
            client.connack_deadline = None
        try:
            if reason.is_failure:
                self._remember_connect_failure(f"the broker refused the connection: {reason}")
                self._connection_refused = True
                self._mark_disconnected(None)
                return
            if isinstance(client, _Client):
                client.log_debug = self.logger.isEnabledFor(logging.DEBUG)
            self.last_connection_error = None
            self._connected = True
            self._reconnect.connected(time.monotonic() - self._socket_opened_at)
            self.logger.info("Connected to the broker at %s", _shown(self.broker_address))
            # on_publish only while the announcements are in flight: paho's per-message
            # callback machinery costs throughput (docs/benchmarks.md).
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
        if isinstance(client, _Client):
            client.connack_deadline = None
        try:
            if self._stopping:
                self._connected = False
                return
            if not self._connected:
                # Closed before a successful CONNACK: a refusal already said why; we hung up on an
                # unanswered CONNECT (no TLS probe: it would delay the failover); or the broker hung up,
                # e.g. a TLS listener and no TLS.
                alert = None if self._connack_timed_out else self._tls_alerts.take() or self._probe_tls_alert()
                if self._connack_timed_out:
                    self._remember_connect_failure(
                        f"the broker at {_shown(self.broker_address)} did not answer CONNECT within "
                        f"{self._connack_wait} s"
                    )
                elif alert is not None and not self._connection_refused:
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
                self._connack_timed_out = False
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
        self._watch_connack(client, sock)
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
        """An announcement of this (re)connection was acknowledged (set only until the connection is ready)."""
        if self._ready.done(mid):
            self._became_ready(client)

    def _became_ready(self, client: mqtt.Client) -> None:
        """Subscriptions and announcements of this connection are acknowledged: tell the user."""
        client.on_publish = None
        self._notify_connection_status(True)
        if self._use_threaded_networking and not self.callbacks_in_thread:
            self._ready.settled.set()  # the application runs the callback later, in run_callbacks()

    def _publish_tracked(self, client: mqtt.Client, topic: str, payload: str, retain: bool) -> None:
        """Publish during (re)connection and count it towards readiness."""
        info = client.publish(topic, payload, qos=self.qos, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS and not info.is_published():
            self._ready.expect(info.mid)

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


class _PahoNoiseFilter(logging.Filter):
    """Drops paho 2.2's "Client is not connected" error.

    paho's network thread logs it at every clean disconnect and after every failed
    connection attempt; the library reports those itself (``last_connection_error``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("Client is not connected"))


_PAHO_NOISE = _PahoNoiseFilter()


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
