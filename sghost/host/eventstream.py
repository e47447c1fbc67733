"""The host's one event stream: what happened, for every part that follows it.

The parts that change things (the resource table, the health sampler, the
uplink status, the desired-state path, the meta-resource's handle) publish
typed events here; the parts that report things (the meta-resource feed, Home
Assistant discovery, the metrics textfile, the hooks, and later a deployment
or a dashboard) subscribe. A publisher does not know who follows it.

Delivery is synchronous and in order, on the supervisor's event loop: an
event published while another is being delivered waits until every
subscriber has seen the earlier one, so each subscriber sees the events in
the order they happened. A subscriber that raises is logged and the others
still get the event; a crashing reporter must not stop the supervision.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from sghost.config.manifest import HostConfig

log = logging.getLogger("sghost")


@dataclass(frozen=True)
class ResourceStateChanged:
    """A resource's state, restarts, pid, error, waiting_for or connection changed.

    ``snapshot`` holds the resource's values at that moment, as ``sghost status``
    shows them (``state``, ``restarts``, ``pid``, ``error``, ``waiting_for``,
    ``connected``, ``broker`` …; CPU and memory are not sampled here).
    ``retiring``: the resource was removed by a reload and is on its way out;
    :class:`ResourceForgotten` follows once it is stopped.
    """

    kind: ClassVar[str] = "resource_state_changed"

    name: str
    snapshot: Mapping[str, Any]
    retiring: bool = False


@dataclass(frozen=True)
class ResourceForgotten:
    """A removed resource is stopped and gone from the table: its topics and records can go too."""

    kind: ClassVar[str] = "resource_forgotten"

    name: str


@dataclass(frozen=True)
class CapabilitiesLost:
    """A process that announced ``topics`` ended (or the meta-resource withdraws commands): they are dead."""

    kind: ClassVar[str] = "capabilities_lost"

    name: str
    topics: tuple[str, ...]


@dataclass(frozen=True)
class HealthSampled:
    """Every ``health_interval`` (and at start and stop): the full snapshot with CPU and memory sampled.

    ``document`` is what ``sghost status`` shows (without each resource's last
    stderr line), with the per-process figures of the metrics under
    ``sghost.health.metrics.PROCESSES``. Subscribers must not change it.
    """

    kind: ClassVar[str] = "health_sampled"

    document: Mapping[str, Any]


@dataclass(frozen=True)
class HealthDocumentReady:
    """A new health document went to the meta-resource (``data/<host>/health``), as published."""

    kind: ClassVar[str] = "health_document_ready"

    document: Mapping[str, Any]


@dataclass(frozen=True)
class UplinkChanged:
    """The bridge to the central broker changed state (``connected`` / ``disconnected``)."""

    kind: ClassVar[str] = "uplink_changed"

    state: str
    status: Mapping[str, Any]
    """The uplink's entry of the health document: ``state``, ``since``, ``queued``, ``dropped``."""


@dataclass(frozen=True)
class MetaResourceSpawned:
    """The meta-resource process has its pid; a ``restarted`` one knows nothing yet."""

    kind: ClassVar[str] = "meta_resource_spawned"

    pid: int
    restarted: bool


@dataclass(frozen=True)
class MetaResourceConnected:
    """The meta-resource connected to the broker at ``broker`` (``host:port``; a node of a cluster)."""

    kind: ClassVar[str] = "meta_resource_connected"

    broker: str


@dataclass(frozen=True)
class DesiredStateApplied:
    """A desired state (the first at start, then each reload or deployment) was applied to the table."""

    kind: ClassVar[str] = "desired_state_applied"

    config: HostConfig
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    initial: bool


@dataclass(frozen=True)
class DeploymentProgress:
    """A deployment (or a rollback) moved to a new state: the retained ``data/<host>/deployment`` document."""

    document: Mapping[str, Any]
    """``id``, ``sequence``, ``state``, ``reason``, ``generation``, ``at`` (docs/deploy.md)."""

    kind: ClassVar[str] = "deployment_progress"


@dataclass(frozen=True)
class DeploymentRejected:
    """A deployment document was rejected; ``total`` counts every rejection since sghost started."""

    total: int

    kind: ClassVar[str] = "deployment_rejected"


@dataclass(frozen=True)
class HostStopping:
    """sghost was asked to stop: every resource stops, then the meta-resource."""

    kind: ClassVar[str] = "host_stopping"


Event = (
    ResourceStateChanged | ResourceForgotten | CapabilitiesLost | HealthSampled | HealthDocumentReady
    | UplinkChanged | MetaResourceSpawned | MetaResourceConnected | DesiredStateApplied | DeploymentProgress
    | DeploymentRejected | HostStopping
)
Listener = Callable[[Event], None]


@dataclass
class EventStream:
    """Subscribers in the order they subscribed; events delivered one at a time, in order."""

    _listeners: list[Listener] = field(default_factory=list)
    _pending: deque[Event] = field(default_factory=deque)
    _delivering: bool = False

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every event from now on; return the function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber (after the events published before it)."""
        self._pending.append(event)
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._pending:
                self._deliver(self._pending.popleft())
        finally:
            self._delivering = False

    def _deliver(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("%s failed on %s; the other subscribers still get it", _named(listener), event)


def as_json(event: Event) -> dict[str, Any]:
    """The event as a JSON-ready object: ``{"kind": "resource_state_changed", "name": ..., ...}``.

    A :class:`DesiredStateApplied` carries its manifest's path instead of the whole configuration.
    """
    if isinstance(event, DesiredStateApplied):
        fields: dict[str, Any] = {
            "manifest": str(event.config.path), "added": list(event.added), "removed": list(event.removed),
            "changed": list(event.changed), "initial": event.initial,
        }
    else:
        fields = asdict(event)
    return {"kind": event.kind, **fields}


def _named(listener: Listener) -> str:
    owner = getattr(listener, "__self__", None)
    return type(owner).__name__ if owner is not None else getattr(listener, "__qualname__", repr(listener))


__all__ = [
    "CapabilitiesLost",
    "DeploymentProgress",
    "DeploymentRejected",
    "DesiredStateApplied",
    "Event",
    "EventStream",
    "HealthDocumentReady",
    "HealthSampled",
    "HostStopping",
    "Listener",
    "MetaResourceConnected",
    "MetaResourceSpawned",
    "ResourceForgotten",
    "ResourceStateChanged",
    "UplinkChanged",
    "as_json",
]
