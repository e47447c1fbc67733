"""The meta-resource: sghost's own presence and every resource's health, as retained MQTT data.

Topics (``<host>`` is ``[host] name``): ``data/<host>/<res>_state``,
``_restarts``, ``_pid``, ``_uptime``, ``_cpu``, ``_memory``, ``_error`` and
``data/<host>/health`` (one JSON document), each announced on
``dataavailable/<host>/...``; presence on ``resourceavailable/<host>/presence``.
Only values that changed are sent, so an idle host is quiet on the broker.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from sgframework import Resource
from sgframework.constants import PAYLOAD_FALSE, PREFIX_DATA, PREFIX_DATAAVAILABLE
from sgframework.framework import build_topic
from sghost.child import ChildSpec, build_resource

FIELDS = ("state", "restarts", "pid", "uptime", "cpu", "memory", "error")
HEALTH_SIGNAL = "health"

log = logging.getLogger("sghost.health")


class HealthPublisher:
    """Publishes health through an ``sgframework.Resource`` named after the host."""

    def __init__(self, spec: ChildSpec) -> None:
        self.resource: Resource = build_resource(spec)
        self.resource.logger = logging.getLogger("sghost.mqtt")
        self._sent: dict[str, str] = {}
        self._registered: set[str] = set()

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

    def update(self, resource_name: str, values: dict[str, Any]) -> None:
        """Send the fields of one resource whose value changed since last sent."""
        for field, value in values.items():
            self._send(f"{resource_name}_{field}", "" if value is None else str(value))

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

    def _send(self, signal: str, payload: str) -> None:
        if self._sent.get(signal) == payload:
            return
        self._sent[signal] = payload
        if signal not in self._registered:
            self._registered.add(signal)
            self.resource.register_outgoing_data(signal, defaultvalue=payload, send_data_as_retained=True)
            if self.resource.is_connected:
                self.resource.send_data(signal, payload)
            return
        if self.resource.mqttclient is None:
            return
        try:
            self.resource.send_data(signal, payload)
        except ValueError as error:
            log.debug("health %s not sent: %s", signal, error)
