"""The host as the deployment orchestrator sees it (:class:`sghost.host.deployments.DeployHost`).

A deployment takes the same road as a reload: a desired state is loaded (here
from a deployed manifest, checked with the generation's packages), then
applied by :meth:`sghost.host.desiredstate.DesiredState.apply`. What a
deployment adds is around that road: which resources run new plugin code, a
changed ``[uplink]`` (the bridge lives in the embedded broker), and the
health that verifies the result. Progress and rejections go out as events on
the host's event stream, which the meta-resource feed publishes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sghost.config.deploy import load_trusted_keys
from sghost.config.manifest import HostConfig, ManifestError
from sghost.deploy.checkgen import TYPES_FILE, CheckProcess, type_versions
from sghost.deploy.startup import StartPlan
from sghost.host import deployments as deploy
from sghost.host import desiredstate
from sghost.host.eventstream import DeploymentProgress, DeploymentRejected, Event, MetaResourceSpawned

if TYPE_CHECKING:
    from sghost.host.supervisor import Supervisor

log = logging.getLogger("sghost")


class DeploymentLink:
    """Implements ``DeployHost`` over the supervisor's parts (desired state, table, broker link, stream)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.host_name = supervisor.config.name
        self._running_types = type_versions(supervisor.registry)
        self.deployments: deploy.Deployments | None = None

    def start(self, plan: StartPlan) -> deploy.Deployments:
        """Take over the generation sghost started from, and report what happened to an interrupted one."""
        self.supervisor.brokers.site_dir = str(plan.site) if plan.site is not None else None
        settings = self.supervisor.config.deploy
        assert settings is not None
        self.deployments = deploy.Deployments(self, plan.store, settings, load_trusted_keys(settings))
        self.supervisor.stream.subscribe(self._follow)
        self.deployments.started(plan.notes, plan.resume)
        return self.deployments

    def _follow(self, event: Event) -> None:
        if isinstance(event, MetaResourceSpawned) and event.restarted and self.deployments is not None:
            self.deployments.republish()  # a new meta-resource process knows nothing

    # ------------------------------------------------------------ DeployHost

    def call_later(self, delay: float, callback: Callable[[], Any]) -> Any:
        return self.supervisor.timers.call_later(delay, callback)

    def check_manifest(self, text: str, site: Path | None) -> deploy.CheckResult:
        """In this process; a generation with packages was checked with them when it was deployed."""
        path = self.supervisor.config.path
        try:
            registry = self.supervisor.registry
            config = desiredstate.load(
                path, registry, text=text, strict_types=True, types_checked_with_packages=site is not None
            )
            return deploy.CheckResult(config)
        except ManifestError as error:
            return deploy.CheckResult(None, str(error))

    def start_check(self, text: str, site: Path) -> CheckProcess:
        return CheckProcess(self.supervisor.config.path, text, site)

    def finish_check(self, check: CheckProcess, text: str, site: Path) -> deploy.CheckResult:
        problems, types = check.result()
        if problems:
            return deploy.CheckResult(None, problems)
        (site.parent / TYPES_FILE).write_text(json.dumps(types, sort_keys=True), encoding="utf-8")
        return self.check_manifest(text, site)

    def _types(self, site: Path | None) -> dict[str, str]:
        if site is None:
            return type_versions(self.supervisor.registry)
        try:
            return dict(json.loads((site.parent / TYPES_FILE).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return {}

    def apply_config(self, config: HostConfig, site: Path | None) -> deploy.Applied:
        """The deployed desired state, through the one desired-state path; new plugin code restarts its resources."""
        supervisor = self.supervisor
        uplink_changed = config.uplink != supervisor.config.uplink
        types = self._types(site)
        changed_types = {name for name, version in types.items() if self._running_types.get(name) != version}
        restart = frozenset(name for name, resource in config.resources.items() if resource.type in changed_types)
        self._running_types = types
        supervisor.brokers.site_dir = str(site) if site is not None else None
        if uplink_changed:  # reload defers an [uplink] change; a deployment restarts the bridge below
            supervisor.desired.config = dataclasses.replace(supervisor.desired.config, uplink=config.uplink)
        result = supervisor.desired.apply(config, restart=restart)
        log.info("deployment applied: %s", result.message)
        if restart:
            log.info("deployment: new plugin code restarted %s", ", ".join(sorted(restart)))
        if uplink_changed:
            supervisor.restart_embedded_broker()
        return deploy.Applied(
            list(result.added), list(result.changed), list(result.removed), uplink_changed and config.uplink is not None
        )

    def resource_health(self, name: str) -> deploy.ResourceHealth | None:
        watcher = self.supervisor.watchers.get(name)
        if watcher is None:
            return None
        return deploy.ResourceHealth(watcher.state, watcher.pid, watcher.last_error, watcher.config.enabled)

    def resource_names(self) -> list[str]:
        return list(self.supervisor.watchers)

    def uplink_connected(self) -> bool:
        uplink = self.supervisor.uplink
        return uplink is not None and uplink.status["state"] == "connected"

    def publish_deployment(self, document: dict[str, Any]) -> None:
        shown = {key: document.get(key) for key in ("id", "state", "generation", "at")}
        self.supervisor.sampler.host_fields["deployment"] = shown  # sghost status --json and the page
        self.supervisor.stream.publish(DeploymentProgress(dict(document)))

    def count_rejection(self, total: int) -> None:
        self.supervisor.sampler.host_fields["deploy_rejected"] = total
        self.supervisor.stream.publish(DeploymentRejected(total))
