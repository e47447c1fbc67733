"""``sghost status --all``: every sghost host on a shared broker, from their retained health.

A host is a meta-resource with a retained ``data/<host>/health`` JSON document
(see :mod:`sghost.statusview` for its shape); its retained
``resourceavailable/<host>/presence`` says whether that document is live
(``True``) or stale (``False``: the host stopped or its last will fired).
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Mapping
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sghost.cli.statusview import NONE, format_error, format_pid, format_table

HEALTH_TOPIC = "data/+/health"
PRESENCE_TOPIC = "resourceavailable/+/presence"
END_MARKER_TOPIC = "sghost/fleet/end-of-retained"
"""Subscribed to after the health and presence filters: its acknowledgement marks the end of their retained messages."""
SETTLE = 0.1
"""Seconds without a new message, after the end marker, before the collection ends (for brokers that reorder)."""
DEFAULT_PORT = 1883
FLEET_COLUMNS = ("HOST", "PRESENCE", "RESOURCE", "STATE", "PID", "RESTARTS", "LAST ERROR")


class FleetError(Exception):
    """The broker could not be asked; ``str(error)`` says why."""


def parse_broker(value: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (``[v6addr]:PORT`` for IPv6) -> (host, port); ValueError with the reason."""
    text = value.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{value!r}: expected [IPv6]:PORT")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"{value!r}: expected HOST[:PORT]")
    if not port_text:
        return host, DEFAULT_PORT
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{value!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"{value!r}: port {port} is not in 1..65535")
    return host, port


def check_prefix(prefix: str) -> str:
    """A ``--prefix`` as given (``gateways/+/``): levels ending in ``/``, ``+`` allowed, no ``#``."""
    if prefix and (not prefix.endswith("/") or "#" in prefix or prefix.startswith("/")):
        raise ValueError(f"{prefix!r}: expected topic levels ending in '/', e.g. 'gateways/+/' ('+' matches one)")
    return prefix


def _name(topic: str, kind: str, suffix: str, prefix_levels: int = 0) -> str | None:
    """The host of ``<prefix><kind>/<host>/<suffix>``; with a prefix, shown as ``<actual prefix><host>``."""
    parts = topic.split("/")
    head, parts = parts[:prefix_levels], parts[prefix_levels:]
    if len(parts) == 3 and parts[0] == kind and parts[2] == suffix:
        return "".join(level + "/" for level in head) + parts[1]
    return None


def _health(payload: bytes) -> dict[str, Any] | None:
    """The health document, or None for a payload that is not one (a plain resource's ``health`` signal)."""
    try:
        document = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if isinstance(document, dict) and isinstance(document.get("resources"), dict):
        return document
    return None


class _Collector:
    """Callbacks of the collecting client; all state lives here.

    The retained messages of a subscription follow its SUBACK. A broker handles a
    client's packets in order, so once a second SUBSCRIBE (the end marker) is
    acknowledged, every retained health and presence message has been sent
    before it. Both are subscribed with QoS 0 so that no in-flight window holds
    retained messages back behind that acknowledgement.
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.prefix_levels = prefix.count("/")
        self.health: dict[str, dict[str, Any]] = {}
        self.presence: dict[str, str] = {}
        self.connect_error: str | None = None
        self.subscribed = False
        self.marker_mid: int | None = None
        self.marker_acked_at: float | None = None
        self.last_message = 0.0

    def on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: Any, props: object) -> None:
        if reason.is_failure:
            self.connect_error = f"the broker refused the connection: {reason}"
            return
        client.subscribe([(self.prefix + HEALTH_TOPIC, 0), (self.prefix + PRESENCE_TOPIC, 0)])

    def on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, reasons: Any, props: object) -> None:
        if mid == self.marker_mid:
            # The marker's own outcome does not matter: an ACL may refuse it.
            self.marker_acked_at = self.last_message = time.monotonic()
            return
        failed = [str(code) for code in reasons if code.is_failure]
        if failed:
            self.connect_error = f"the broker refused the subscription: {', '.join(failed)}"
            return
        self.subscribed = True
        _, self.marker_mid = client.subscribe(END_MARKER_TOPIC, 0)

    def on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self.last_message = time.monotonic()
        host = _name(message.topic, "data", "health", self.prefix_levels)
        if host is not None:
            document = _health(message.payload)
            if document is None:
                self.health.pop(host, None)  # cleared (empty payload) or not a host's health
            else:
                self.health[host] = document
            return
        name = _name(message.topic, "resourceavailable", "presence", self.prefix_levels)
        if name is not None:
            self.presence[name] = message.payload.decode("utf-8", errors="replace")

    def done(self, now: float) -> bool:
        return self.marker_acked_at is not None and now - self.last_message >= SETTLE


def new_client(
    timeout: float,
    tls_context: ssl.SSLContext | None = None,
    username: str | None = None,
    password: str | None = None,
    protocol: int = mqtt.MQTTv311,
) -> mqtt.Client:
    """A paho client (callback API 2) with the TLS context and credentials given; not yet connected."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
    client.connect_timeout = timeout
    if tls_context is not None:
        client.tls_set_context(tls_context)
    if username is not None:
        client.username_pw_set(username, password)
    return client


def connect(client: mqtt.Client, host: str, port: int, timeout: float) -> None:
    """Open the client's connection to ``host:port``; FleetError says why it cannot."""
    try:
        client.connect(host, port, keepalive=max(5, int(timeout) + 5))
    except (OSError, ValueError) as error:
        raise FleetError(f"cannot connect to the broker {host}:{port}: {error}") from None


def collect_fleet(
    host: str,
    port: int = DEFAULT_PORT,
    timeout: float = 5.0,
    tls_context: ssl.SSLContext | None = None,
    username: str | None = None,
    password: str | None = None,
    prefix: str = "",
) -> dict[str, dict[str, Any]]:
    """Every sghost host whose retained health the broker at ``host:port`` holds.

    ``tls_context``, ``username`` and ``password`` are for a broker that wants them
    (``sghost status --all`` takes them from the manifest's ``[broker]``).

    Returns ``{host_name: {"presence": "True" | "False" | None, "health": dict}}``;
    only names with a health document count (a plain resource's presence is not a host).
    ``prefix`` (e.g. ``gateways/+/``, where uplinks put their gateways on a central broker)
    is put before every topic; each host is then named ``<its prefix><host name>``.
    Collection ends once the broker has sent every retained message of the
    subscription (see :class:`_Collector`), or after ``timeout`` seconds. Raises
    FleetError when the broker cannot be reached, refuses, or does not
    acknowledge the subscription within ``timeout``.
    """
    collector = _Collector(check_prefix(prefix))
    client = new_client(timeout, tls_context, username, password)
    client.on_connect = collector.on_connect
    client.on_subscribe = collector.on_subscribe
    client.on_message = collector.on_message
    deadline = time.monotonic() + timeout
    connect(client, host, port, timeout)
    try:
        _collect(client, collector, deadline, f"{host}:{port}")
        if not collector.subscribed:
            raise FleetError(f"the broker {host}:{port} did not answer within {timeout} s")
    finally:
        client.disconnect()
    return {
        name: {"presence": collector.presence.get(name), "health": document}
        for name, document in sorted(collector.health.items())
    }


def _collect(client: mqtt.Client, collector: _Collector, deadline: float, where: str) -> None:
    """Run the client's loop until the collector is done or the deadline passes."""
    while True:
        code = client.loop(timeout=max(0.01, min(deadline - time.monotonic(), SETTLE / 2)))
        if collector.connect_error is not None:
            raise FleetError(f"{where}: {collector.connect_error}")
        if code != mqtt.MQTT_ERR_SUCCESS:
            raise FleetError(f"lost the connection to the broker {where}: {mqtt.error_string(code)}")
        now = time.monotonic()
        if collector.done(now) or now >= deadline:
            return


def _presence(value: str | None) -> str:
    if value == "True":
        return "online"
    if value == "False":
        return "offline (stale)"
    return "unknown"


def format_fleet(fleet: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per resource of every host: HOST PRESENCE RESOURCE STATE PID RESTARTS LAST ERROR.

    A host whose presence is ``False`` shows ``offline (stale)``: its states are
    the last it published before it went away.
    """
    rows: list[list[str]] = []
    for name in sorted(fleet):
        entry = fleet[name]
        presence = _presence(entry.get("presence"))
        health = entry.get("health") or {}
        resources = health.get("resources") if isinstance(health, Mapping) else None
        if not isinstance(resources, Mapping) or not resources:
            rows.append([name, presence, NONE, NONE, NONE, NONE, NONE])
            continue
        for resource, values in resources.items():
            values = values if isinstance(values, Mapping) else {}
            rows.append([
                name,
                presence,
                str(resource),
                str(values.get("state") or NONE),
                format_pid(values.get("pid")),
                str(values.get("restarts", NONE)),
                format_error(values.get("error")),
            ])
    if not rows:
        return "(no sghost host found)"
    return format_table(FLEET_COLUMNS, rows)


__all__ = ["FleetError", "check_prefix", "collect_fleet", "connect", "format_fleet", "new_client", "parse_broker"]
