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
UPTIME_GROWTH = 1.1
"""An uptime is reported again once it grew by 10 % (or went back, after a restart)."""
CPU_STEP = 1.0
"""Percentage points a CPU figure must move by to be reported again."""
MEMORY_STEP = 0.05
"""Fraction (at least 1 MiB) a memory figure must move by to be reported again."""


def worth_reporting(field: str, reported: Any, value: Any) -> bool:
    """Whether ``value`` differs enough from the ``reported`` one to be sent (dead bands keep an idle host quiet)."""
    if reported is None or type(reported) is not type(value) or not isinstance(value, int | float):
        return reported != value
    if field.endswith("uptime"):
        return value < reported or value >= reported * UPTIME_GROWTH - 1e-9
    if field.endswith("cpu"):
        return abs(value - reported) >= CPU_STEP
    if field.endswith("memory") or field.endswith("_mb"):
        return abs(value - reported) >= max(1.0, reported * MEMORY_STEP)
    return value != reported

log = logging.getLogger("sghost.health")


class HealthPublisher:
    """Publishes health through an ``sgframework.Resource`` named after the host."""

    def __init__(self, spec: ChildSpec) -> None:
        self.resource: Resource = build_resource(spec)
        self.resource.logger = logging.getLogger("sghost.mqtt")
        self._sent: dict[str, str] = {}
        self._reported: dict[str, Any] = {}
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

    def report(self, key: str, value: Any) -> Any:
        """Return the value to show for ``key``: ``value`` if it moved enough, else the one shown before."""
        reported = self._reported.get(key)
        if worth_reporting(key, reported, value):
            self._reported[key] = reported = value
        return reported

    def update(self, resource_name: str, values: dict[str, Any]) -> dict[str, Any]:
        """Send the fields of one resource that moved enough since last sent; return the values as shown."""
        shown = {field: self.report(f"{resource_name}_{field}", value) for field, value in values.items()}
        for field, value in shown.items():
            self._send(f"{resource_name}_{field}", "" if value is None else str(value))
        return shown

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
            self._reported.pop(signal, None)
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
