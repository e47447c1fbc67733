"""The Secure Gateway App and Resource classes, on paho-mqtt 2.x: a composition of their parts.

- :mod:`sgframework.connection`: addresses and failover, TLS, connect and reconnect, status callbacks;
- :mod:`sgframework.outbound`: bounds, waiting for room, :class:`PublishError`, counters, warnings;
- :mod:`sgframework.inbound`: registrations, on-change filtering, which thread runs a callback;
- :mod:`sgframework.announcements`: a Resource's presence, availability, defaults, retained values, rebirth.

See docs/sgframework.md for the API and for where this implementation
deliberately differs from the original one (no blind sleeps, TLS 1.2+,
reconnection, bad payloads survived).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import ssl
import threading
from typing import Any

import paho.mqtt.client as mqtt

from sgframework import constants
from sgframework.addresses import broker_addresses
from sgframework.announcements import Announcements, _Output
from sgframework.connection import Connection, ConnectionStatusCallback, _parse_port
from sgframework.constants import PREFIX_COMMAND, PREFIX_COMMANDAVAILABLE, PREFIX_DATA
from sgframework.inbound import Inbound, InputCallback, _Input
from sgframework.outbound import Outbound, PublishCounters, PublishError
from sgframework.tls import create_tls_context, describe_tls_alert
from sgframework.topics import build_topic, validate_name

__all__ = [
    "App",
    "ConnectionStatusCallback",
    "InputCallback",
    "PublishCounters",
    "PublishError",
    "Resource",
    "build_topic",
    "create_tls_context",
    "describe_tls_alert",
]


class App(Connection, Outbound, Inbound):
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
        """Threaded mode: run callbacks on the library's network thread after each network step (default;
        a relief thread keeps the network going while one runs long), or, when False, in
        :meth:`run_callbacks` called by the application's own loop (an extension)."""
        self.mqttclient: mqtt.Client | None = None
        self.logger = logging.getLogger(f"sgframework.{self.name}")
        self.userdata: Any = None
        self.on_broker_connectionstatus_info: ConnectionStatusCallback | None = None
        self.last_connection_error: str | None = None
        """Why the latest connection attempt failed, or ``None`` (an extension)."""

        self._inputs: dict[str, _Input] = {}
        self._state_lock = threading.RLock()
        """Guards the registrations (inputs, outputs) and the values they keep."""
        self._init_connection()
        self._init_outbound()
        self._init_inbound()

    def __repr__(self) -> str:
        return (
            f"SG App: '{self.name}', connecting to host '{self.host}', port {self.port}. "
            f"Has {len(self._inputs)} input signals registered."
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
        self._restart_reconnect()
        self._ready.reset()
        self._ready.settled.clear()
        self._events = queue.SimpleQueue()
        self.mqttclient = self._create_client()
        if use_threaded_networking:
            if self.callbacks_in_thread:
                self._start_callback_thread(self.mqttclient)
            self._connect_async(self.mqttclient)
            self.mqttclient.loop_start()
            # Returns when ready, or when the first attempt failed (the client keeps trying).
            self._ready.settled.wait(constants.START_WAIT_TIME)

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
        self._give_up_unanswered_connect(client)
        if self._loop_socket_open or self._loop_try_connect(client):
            self._run_network_loop(client, self._network_timeout(client))
        self._run_pending_callbacks()

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

    def _outgoing_topics(self) -> list[str]:
        return []

    def _require_started(self, method: str) -> mqtt.Client:
        if self.mqttclient is None:
            raise ValueError(f"{self.name}: call start() before {method}()")
        return self.mqttclient


class Resource(Announcements, App):
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

    def send_data(self, signalname: str, value: Any) -> None:
        """Publish ``str(value)`` on ``data/<name>/<signalname>``. Thread safe.

        An unregistered signal is sent non-retained, with a warning.
        """
        if self.mqttclient is None:
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
        self._publish(output.topic, payload, retain=output.send_data_as_retained)

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
