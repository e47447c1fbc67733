"""What the meta-resource publishes, fed from the host's event stream.

A resource's state topics (``data/<host>/<res>_state`` …) follow each
:class:`ResourceStateChanged` at once; the health document follows a moment
later, gathering the changes of that moment into one; every
:class:`HealthSampled` refreshes every topic (each past its dead band) and the
document. A new meta-resource process knows nothing, so it gets everything again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from sghost.health import metrics
from sghost.health.reporting import MetaResourceProcess
from sghost.host.deployments import DEPLOYMENT_SIGNAL, REJECTED_SIGNAL
from sghost.host.eventstream import (
    CapabilitiesLost,
    DeploymentProgress,
    DeploymentRejected,
    Event,
    EventStream,
    HealthDocumentReady,
    HealthSampled,
    MetaResourceConnected,
    MetaResourceSpawned,
    ResourceForgotten,
    ResourceStateChanged,
    UplinkChanged,
)
from sghost.host.sampling import resource_snapshot
from sghost.host.timers import Timers
from sghost.host.watcher import Watcher

STATE_FIELDS = ("state", "restarts", "pid", "error", "waiting_for")
"""Published the moment they change; cpu, memory and uptime every health_interval."""
DOCUMENT_DELAY = 0.05
"""Seconds by which state changes are gathered into one new ``health`` document."""
SAMPLED_FIELDS = ("uptime", "cpu", "memory")
DOCUMENT_ONLY = ("connected", "queued", "broker")
"""In a resource's entry of the health document, but not published as ``<res>_<field>`` topics."""
HOST_SAMPLED = ("uptime", "cpu", "memory", "memory_available_mb")


def health_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """One resource's values as its ``<res>_<field>`` topics carry them.

    A retained empty payload would delete the topic, so "no process" is pid
    ``0`` and "no error" is ``none``.
    """
    fields = {key: values[key] for key in values if key not in DOCUMENT_ONLY}
    fields["pid"] = values["pid"] or 0
    fields["error"] = values["error"] or "none"
    fields["waiting_for"] = ",".join(values.get("waiting_for") or []) or "none"
    return fields


class MetaResourceFeed:
    """Subscribes to the event stream and tells the meta-resource process what to publish."""

    def __init__(
        self,
        stream: EventStream,
        timers: Timers,
        meta_resource: Callable[[], MetaResourceProcess | None],
        watchers: Mapping[str, Watcher],
        uplink: Callable[[], Mapping[str, Any] | None],
        sample_now: Callable[[], None],
        host_fields: Callable[[], Mapping[str, Any]] = dict,
    ) -> None:
        self.stream = stream
        self.timers = timers
        self.meta_resource = meta_resource
        self.watchers = watchers
        self.uplink = uplink
        self.sample_now = sample_now
        self.host_fields = host_fields
        """Host-wide entries of the health document kept by other parts (``deploy_rejected``)."""
        self._document: dict[str, Any] | None = None
        self._document_due = False
        self._retiring: set[str] = set()

    def __call__(self, event: Event) -> None:
        meta = self.meta_resource()
        if meta is None:
            return
        match event:
            case ResourceStateChanged(name=name, retiring=True):
                self._retiring.add(name)
            case ResourceStateChanged(name=name, snapshot=snapshot):
                fields = health_fields(snapshot)
                meta.update(name, {key: fields[key] for key in STATE_FIELDS})
                self._publish_document_soon()
            case ResourceForgotten(name=name):
                self._retiring.discard(name)
                meta.forget(name)
            case CapabilitiesLost(topics=topics):
                meta.capabilities_lost(list(topics))
            case HealthSampled(document=document):
                self._publish_sampled(meta, document)
            case UplinkChanged() | MetaResourceConnected():
                self._publish_document_soon()
            case DeploymentProgress(document=document):
                meta.send_value(DEPLOYMENT_SIGNAL, json.dumps(dict(document), sort_keys=True))
            case DeploymentRejected(total=total):
                meta.send_value(REJECTED_SIGNAL, str(total))
                self._publish_document_soon()
            case MetaResourceSpawned(restarted=False):
                self._publish_document_soon()  # the document now has a meta_pid
            case MetaResourceSpawned(restarted=True):
                for name, watcher in list(self.watchers.items()):
                    if name in self._retiring:
                        continue
                    fields = health_fields(resource_snapshot(watcher))
                    meta.update(name, {key: fields[key] for key in STATE_FIELDS})
                self.sample_now()

    def _publish_sampled(self, meta: MetaResourceProcess, sampled: Mapping[str, Any]) -> None:
        document = {key: value for key, value in sampled.items() if key != metrics.PROCESSES}
        # not part of the health document: it would change at every sample
        document["resources"] = resources = {name: dict(values) for name, values in sampled["resources"].items()}
        for name, values in resources.items():
            shown = meta.update(name, health_fields(values))
            values.update({key: shown[key] for key in SAMPLED_FIELDS})
        for key in HOST_SAMPLED:
            document[key] = meta.report(f"host.{key}", document[key])
        self._send(meta, document)

    def _publish_document_soon(self) -> None:
        """Gather the state changes of the next moment into one new ``health`` document."""
        if not self._document_due:
            self._document_due = True
            self.timers.call_later(DOCUMENT_DELAY, self._publish_document)

    def _publish_document(self) -> None:
        """Publish the last document with current states; CPU and memory stay as last sampled.

        Sampling here would shorten the CPU window to the time since the
        last state change, so only a :class:`HealthSampled` samples.
        """
        self._document_due = False
        meta = self.meta_resource()
        if meta is None or self._document is None:
            return
        sampled = self._document["resources"]
        resources = {}
        for name, watcher in self.watchers.items():
            values = resource_snapshot(watcher)
            before = sampled.get(name)
            if before is not None and before["pid"] == values["pid"] and values["pid"] is not None:
                values.update({key: before[key] for key in SAMPLED_FIELDS})
            resources[name] = values
        document = {
            **self._document,
            "meta_pid": meta.pid,
            "broker_connected": meta.is_connected(),
            "broker": meta.broker,
            "resources": resources,
            **self.host_fields(),
        }
        uplink = self.uplink()
        if uplink is not None:
            document["uplink"] = dict(uplink)
        self._send(meta, document)

    def _send(self, meta: MetaResourceProcess, document: dict[str, Any]) -> None:
        self._document = document
        meta.publish_health(document)
        self.stream.publish(HealthDocumentReady(document))
