"""The smaller followers of the host's event stream: the hooks, the metrics textfile, Home Assistant discovery.

Each is a callable subscriber: ``stream.subscribe(follower)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from sghost import __version__
from sghost.config.manifest import HostConfig
from sghost.health import metrics
from sghost.health.metamessages import DiscoveryResource
from sghost.health.reporting import MetaResourceProcess
from sghost.host.eventstream import (
    DesiredStateApplied,
    Event,
    HealthSampled,
    MetaResourceSpawned,
    ResourceForgotten,
    ResourceStateChanged,
)
from sghost.host.hooks import HookRunner
from sghost.plugins import PluginRegistry

log = logging.getLogger("sghost")


class HookFollower:
    """Runs the ``[hooks]`` programs a resource's change calls for."""

    def __init__(self, hooks: HookRunner, config: Callable[[], HostConfig]) -> None:
        self.hooks = hooks
        self.config = config

    def __call__(self, event: Event) -> None:
        match event:
            case ResourceStateChanged(name=name, snapshot=snapshot):
                self.hooks.config = self.config().hooks  # a reload's new [hooks] apply to its own changes
                self.hooks.state_changed(name, snapshot["state"], snapshot["error"], snapshot["restarts"])
            case ResourceForgotten(name=name):
                self.hooks.forget(name)


class MetricsFile:
    """Writes ``[metrics] textfile`` (Prometheus text) at every health sample; says once when it cannot."""

    def __init__(self, config: Callable[[], HostConfig]) -> None:
        self.config = config
        self._error: str | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, HealthSampled):
            self.write(event.document)

    def write(self, document: Mapping[str, Any]) -> None:
        path = self.config().metrics.textfile
        if path is None:
            return
        try:
            metrics.write_atomically(path, metrics.render(dict(document)))
        except OSError as error:
            message = f"cannot write the metrics file {path}: {error.strerror or error}"
            if message != self._error:
                log.warning("%s; retrying every health_interval", message)
            self._error = message
            return
        if self._error is not None:
            log.info("metrics file %s written again", path)
        self._error = None


class DiscoveryFollower:
    """Tells the meta-resource what Home Assistant discovery covers: at its start and after each new desired state."""

    def __init__(
        self, config: Callable[[], HostConfig], registry: PluginRegistry,
        meta_resource: Callable[[], MetaResourceProcess | None],
    ) -> None:
        self.config = config
        self.registry = registry
        self.meta_resource = meta_resource
        self._discovery_on = False

    def __call__(self, event: Event) -> None:
        match event:
            case MetaResourceSpawned():
                self.configure()
            case DesiredStateApplied(initial=False):
                self.configure()

    def configure(self) -> None:
        """Only when discovery is on, or was just turned off."""
        config = self.config()
        settings = config.homeassistant
        meta = self.meta_resource()
        if meta is None or not (settings.discovery or self._discovery_on):
            return
        self._discovery_on = settings.discovery
        types = self.registry.types
        versions = {info.name: info.version or "" for info in self.registry.plugins}
        resources = {
            name: DiscoveryResource(
                type_name=resource.type,
                version=versions.get(types[resource.type].plugin, "") if resource.type in types else "",
            )
            for name, resource in config.resources.items()
        }
        meta.homeassistant(
            discovery=settings.discovery, prefix=settings.prefix, version=__version__,
            remote_control=config.remote_control, resources=resources,
        )
