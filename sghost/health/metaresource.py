"""The meta-resource process: sghost's own presence and every resource's health, as retained MQTT data.

Topics (``<host>`` is ``[host] name``): ``data/<host>/<res>_state``,
``_restarts``, ``_pid``, ``_uptime``, ``_cpu``, ``_memory``, ``_error`` and
``data/<host>/health`` (one JSON document), each announced on
``dataavailable/<host>/...``; presence on ``resourceavailable/<host>/presence``.
Only values that changed are sent, so an idle host is quiet on the broker.

It runs in a process of its own, forked from the zygote, so that the
supervisor never loads paho or ssl. The supervisor sends it JSON lines on a
pipe (see :func:`run_meta_resource`); it answers with events (connection changes,
remote-control commands) on its events pipe.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import selectors
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from sgframework import PublishError, Resource
from sgframework.constants import PAYLOAD_FALSE, PREFIX_DATA, PREFIX_DATAAVAILABLE
from sgframework.framework import build_topic
from sghost.health import metamessages as msg
from sghost.health.deployrelay import DEPLOY_COMMAND, Relay
from sghost.health.homeassistant import Discovery, Gateway, ResourceInfo
from sghost.health.uplinkstate import UplinkWatch
from sghost.process import events
from sghost.process.child import build_resource
from sghost.process.lines import LineSplitter
from sghost.process.spec import ChildSpec

FIELDS = ("state", "restarts", "pid", "uptime", "cpu", "memory", "error", "dropped", "refused", "waiting_for")
HEALTH_SIGNAL = "health"
log = logging.getLogger("sghost.metaresource")


class MetaResource:
    """The meta-resource: sghost's own ``sgframework.Resource``, named after the host, that publishes health."""

    def __init__(self, spec: ChildSpec) -> None:
        self.resource: Resource = build_resource(spec)
        self.resource.logger = logging.getLogger("sghost.mqtt")
        self._sent: dict[str, str] = {}
        self._registered: set[str] = set()
        self.discovery: Discovery | None = None

    @property
    def name(self) -> str:
        return self.resource.name

    def start(self) -> None:
        self.resource.start(use_threaded_networking=True)

    def stop(self) -> None:
        if self.resource.mqttclient is not None:
            self.resource.stop()

    def is_connected(self) -> bool:
        return self.resource.is_connected

    def add_command(self, signalname: str, callback: Callable[..., Any]) -> None:
        """Accept ``command/<host>/<signalname>``; the callback's return value is echoed."""
        self.resource.register_incoming_command(signalname, callback, echo=True)

    def update(self, resource_name: str, values: dict[str, str]) -> None:
        """Send the fields of one resource whose text changed since last sent."""
        for field, value in values.items():
            self._send(f"{resource_name}_{field}", value)

    def publish_health(self, document: dict[str, Any]) -> None:
        self._send(HEALTH_SIGNAL, json.dumps(document, sort_keys=True, separators=(",", ":")))

    def capabilities_lost(self, topics: list[str]) -> None:
        """Publish retained ``False`` on a dead resource's capability topics (Sparkplug's DDEATH)."""
        client = self.resource.mqttclient
        if client is None:
            return
        for topic in topics:
            client.publish(topic, PAYLOAD_FALSE, qos=self.resource.qos, retain=True)

    def forget(self, resource_name: str) -> None:
        """Clear a removed resource's retained health topics (empty retained payloads)."""
        client = self.resource.mqttclient
        for field in FIELDS:
            signal = f"{resource_name}_{field}"
            self._sent.pop(signal, None)
            self._registered.discard(signal)
            self.resource.unregister_outgoing_data(signal)
            if client is not None:
                for prefix in (PREFIX_DATA, PREFIX_DATAAVAILABLE):
                    client.publish(build_topic(prefix, self.name, signal), b"", qos=self.resource.qos, retain=True)

    def homeassistant(self, message: dict[str, Any]) -> None:
        """Home Assistant discovery as the supervisor configured it (sghost.health.homeassistant)."""
        if not message.get("discovery"):
            if self.discovery is not None:
                self.discovery.close()
                self.discovery = None
            return
        gateway = Gateway(
            prefix=str(message["prefix"]), host=self.name, version=str(message["version"]),
            remote_control=bool(message.get("remote_control")),
        )
        resources = {name: ResourceInfo(**info) for name, info in message.get("resources", {}).items()}
        if self.discovery is not None and self.discovery.gateway.prefix != gateway.prefix:
            self.discovery.close()
            self.discovery = None
        if self.discovery is None:
            discovery = Discovery(self.resource.mqttclient, gateway)
            discovery.configure(gateway, resources)
            self.discovery = discovery
            if self.resource.is_connected:
                discovery.connected()
        else:
            self.discovery.configure(gateway, resources)

    def connection_changed(self, connected: bool) -> None:
        discovery = self.discovery
        if discovery is None:
            return
        if connected:
            discovery.connected()
        else:
            discovery.disconnected()

    def send_value(self, signal: str, payload: str) -> None:
        """Publish one retained data value of the meta-resource (only when it changed)."""
        self._send(signal, payload)

    def _send(self, signal: str, payload: str) -> None:
        if self._sent.get(signal) == payload:
            return
        self._sent[signal] = payload
        if signal not in self._registered:
            self._registered.add(signal)
            self.resource.register_outgoing_data(signal, defaultvalue=payload, send_data_as_retained=True)
            if not self.resource.is_connected:
                return  # the default is published at the connection
        if self.resource.mqttclient is None:
            return
        try:
            self.resource.send_data(signal, payload)
        except PublishError:
            pass  # counted and logged by sgframework; the retained default is sent again at the reconnect
        except ValueError as error:
            log.debug("health %s not sent: %s", signal, error)


REMOTE_ANSWER_TIMEOUT = 5.0
POLL_INTERVAL = 0.5
HEARTBEAT_INTERVAL = 2.0
"""Seconds between the main loop's heartbeats to the supervisor (sghost.health.HEARTBEAT_TIMEOUT)."""


class RemoteBridge:
    """Carries remote-control commands from the MQTT thread to the supervisor and its answers back."""

    def __init__(self, channel: events.EventWriter) -> None:
        self.channel = channel
        self._lock = threading.Lock()
        self._next_id = itertools.count(1)
        self._waiting: dict[int, tuple[threading.Event, list[str]]] = {}

    def ask(self, resource: Any, messagetype: str, servicename: str, op: str, payload: str) -> str:
        """An MQTT command callback: its return value is echoed on ``data/<host>/<op>``."""
        request_id = next(self._next_id)
        answered, answer = threading.Event(), []
        with self._lock:
            self._waiting[request_id] = (answered, answer)
        self.channel.send(events.REMOTE, id=request_id, op=op, payload=payload)
        try:
            if answered.wait(REMOTE_ANSWER_TIMEOUT):
                return answer[0]
            return f"error: {op} {payload!r} not answered within {REMOTE_ANSWER_TIMEOUT:g} s"
        finally:
            with self._lock:
                self._waiting.pop(request_id, None)

    def answer(self, request_id: int, text: str) -> None:
        with self._lock:
            waiting = self._waiting.get(request_id)
        if waiting is not None:
            waiting[1].append(text)
            waiting[0].set()


def apply(meta_resource: MetaResource, bridge: RemoteBridge, message: dict[str, Any]) -> bool:
    """Carry out one message from the supervisor (:mod:`sghost.health.metamessages`); return False for ``stop``."""
    op = message.get("op")
    if op == msg.UPDATE:
        meta_resource.update(message["name"], message["values"])
    elif op == msg.HEALTH:
        meta_resource.publish_health(message["document"])
    elif op == msg.LOST:
        meta_resource.capabilities_lost(message["topics"])
    elif op == msg.FORGET:
        meta_resource.forget(message["name"])
    elif op == msg.HOMEASSISTANT:
        meta_resource.homeassistant(message)
    elif op == msg.VALUE:
        meta_resource.send_value(message["signal"], message["payload"])
    elif op == msg.ANSWER:
        bridge.answer(message["id"], message["text"])
    elif op == msg.REBIRTH:
        sent = meta_resource.resource.republish()
        log.info("rebirth: %d message(s) published again", sent)
    elif op == msg.STOP:
        return False
    return True


def run_meta_resource(spec: ChildSpec, registry: object, channel: events.EventWriter, inbound_fds: list[int]) -> int:
    """The meta-resource process: publish what arrives on its inbound pipe until ``stop`` or end of stream."""
    inbound = inbound_fds[0]
    # The supervisor ends this process with "stop" once every resource's state is
    # published, or by closing the pipe when it dies. A SIGTERM for the whole
    # cgroup (systemd) must not end it first: presence False comes last.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    stopping = threading.Event()
    meta_resource = MetaResource(spec)
    bridge = RemoteBridge(channel)
    for op in spec.commands:
        if op == DEPLOY_COMMAND:
            Relay(channel).register(meta_resource.resource)
        else:
            meta_resource.add_command(op, bridge.ask)
    uplink = _uplink_watch(spec, meta_resource, channel)

    def connection_changed(_resource: Resource, connected: bool) -> None:
        if connected and uplink is not None and meta_resource.resource.mqttclient is not None:
            uplink.attach(meta_resource.resource.mqttclient)
            uplink.subscribe(meta_resource.resource.mqttclient)
        if connected:
            host, port = meta_resource.resource.broker_address
            channel.send(events.CONNECTED, broker=f"{host}:{port}")
        else:
            channel.send(events.DISCONNECTED)
        meta_resource.connection_changed(connected)

    meta_resource.resource.on_broker_connectionstatus_info = connection_changed
    meta_resource.start()
    reported_error: str | None = None
    splitter = LineSplitter(max_line=1 << 24)
    next_heartbeat = 0.0
    with selectors.DefaultSelector() as selector:
        selector.register(inbound, selectors.EVENT_READ)
        while not stopping.is_set():
            now = time.monotonic()
            if now >= next_heartbeat:
                channel.send(events.HEARTBEAT)
                next_heartbeat = now + HEARTBEAT_INTERVAL
            if uplink is not None:
                uplink.poll()
            error = meta_resource.resource.last_connection_error
            if error is not None and error != reported_error:
                reported_error = error
                channel.send(events.CONNECT_ERROR, text=error, refused=False)
            if meta_resource.discovery is not None:
                meta_resource.discovery.check()
            if not selector.select(POLL_INTERVAL):
                continue
            chunk = os.read(inbound, 1 << 16)
            if not chunk:
                break  # the supervisor is gone
            for line in splitter.feed(chunk):
                message = msg.decode(line)
                if message is None:
                    log.warning("ignored a line from the supervisor that is not a message: %.80s", line)
                elif not apply(meta_resource, bridge, message):
                    stopping.set()
    meta_resource.stop()
    return 0


def _uplink_watch(spec: ChildSpec, meta_resource: MetaResource, channel: events.EventWriter) -> UplinkWatch | None:
    """With an [uplink]: follow the bridge's state and counters on the embedded broker."""
    if not spec.uplink_topics:
        return None

    def report(state: str, queued: int | None, dropped: int | None) -> None:
        channel.send(events.UPLINK, state=state, queued=queued, dropped=dropped)

    return UplinkWatch(spec.uplink_topics, meta_resource.send_value, report)
