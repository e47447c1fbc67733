"""The one path from a desired state to the running table: load -> plan -> apply -> report.

Start applies the first desired state onto an empty table; ``sghost reload``
(and SIGHUP) loads the manifest again and applies it; a deployment applies a
configuration it loaded from a deployed manifest, then checks the health
itself. :meth:`DesiredState.apply` never reads a file: loading is
:func:`load`, a step of its own, so a caller can apply what it validated.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from sghost.config.checked import load_checked
from sghost.config.manifest import HostConfig, load_manifest
from sghost.config.reloadplan import ReloadPlan, plan_reload
from sghost.host.brokerlink import BrokerLink
from sghost.host.eventstream import DesiredStateApplied, EventStream
from sghost.host.table import ResourceTable
from sghost.plugins import PluginRegistry

log = logging.getLogger("sghost")


def load(
    path: str | Path,
    registry: PluginRegistry,
    text: str | None = None,
    *,
    strict_types: bool = False,
    types_checked_with_packages: bool = False,
) -> HostConfig:
    """Read and check a manifest as a desired state; raises ``ManifestError`` naming every problem.

    Types no plugin provides are not problems here unless ``strict_types``
    (a deployment asks for it): those resources become ``fatal`` with the
    plugin's error, and the others run. ``text``, when given, is read as if it
    were the file at ``path`` (a deployed generation's manifest: its relative
    paths resolve against ``path``'s directory). With
    ``types_checked_with_packages`` (a generation that brought its own
    packages, whose types and settings were checked in a process that imported
    them) only the manifest itself is checked here.
    """
    if types_checked_with_packages:
        return load_manifest(path, text=text)
    return load_checked(str(path), registry, strict_types=strict_types, text=text)


@dataclass(frozen=True)
class ApplyResult:
    """What applying a desired state changed."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    """Restarted: their table, their policy or the ``[broker]`` changed."""
    untouched: tuple[str, ...]
    """Kept their processes and pids."""
    deferred: tuple[str, ...]
    """Changes that take effect only at the next start of sghost (each also logged)."""
    meta_resource_restarted: bool
    message: str
    """What ``sghost reload`` prints: counts, and whether the meta-resource reconnects."""


class DesiredState:
    """Holds the running desired state and applies new ones to the resource table by difference."""

    def __init__(
        self,
        config: HostConfig,
        table: ResourceTable,
        brokers: BrokerLink,
        stream: EventStream,
        restart_meta_resource: Callable[[bool], None],
        reopen_file_logs: Callable[[], None],
        remote_control_changed: Callable[[], None],
    ) -> None:
        self.config = config
        """The desired state running now (with the deferred parts as they were at start)."""
        self.table = table
        self.brokers = brokers
        self.stream = stream
        self.restart_meta_resource = restart_meta_resource
        self.reopen_file_logs = reopen_file_logs
        self.remote_control_changed = remote_control_changed
        self._initial = True

    def apply(self, new: HostConfig, restart: Collection[str] = ()) -> ApplyResult:
        """Make the table run ``new``: start the added, stop the removed, restart the changed resources.

        ``restart`` names resources to restart although their table is unchanged
        (a deployment brought new code for their plugin). The first call (at
        start) finds an empty table, so every resource is added.
        """
        current = self.table.current()
        plan = plan_reload(self.config, new, current)
        forced = [name for name in restart if name in current and name in plan.config.resources]
        if forced:
            plan = dataclasses.replace(plan, changed=[*plan.changed, *(n for n in forced if n not in plan.changed)])
        for line in plan.deferred:
            log.warning("reload: %s", line)
        remote_control_changed = plan.config.remote_control != self.config.remote_control
        self.config = plan.config
        if remote_control_changed:
            self.remote_control_changed()
        self.brokers.follow(plan.config.broker)
        if plan.reopen_logs:
            self.reopen_file_logs()
        self.table.retire(plan.removed)  # dependents first
        for name in plan.changed:
            self.table.reconfigure(name, plan.config.resources[name])
        for name in plan.added:
            self.table.take_back(name, plan.config.resources[name])
        initial, self._initial = self._initial, False
        self.stream.publish(DesiredStateApplied(
            plan.config, tuple(plan.added), tuple(plan.removed), tuple(plan.changed), initial,
        ))
        if plan.restart_meta:
            self.restart_meta_resource(remote_control_changed and not self.config.remote_control)
        self.table.order.release_waiting()  # a changed depends_on may free a waiting resource
        return self._result(plan)

    def _result(self, plan: ReloadPlan) -> ApplyResult:
        touched = {*plan.added, *plan.changed}
        untouched = tuple(name for name in plan.config.resources if name not in touched)
        message = (
            f"reloaded {self.config.path}: {len(plan.added)} added, {len(plan.removed)} removed, "
            f"{len(plan.changed)} restarted, {len(untouched)} untouched"
        )
        if plan.restart_meta:
            message += f"; {self.config.name} reconnects with the new settings"
        return ApplyResult(
            added=tuple(plan.added), removed=tuple(plan.removed), changed=tuple(plan.changed),
            untouched=untouched, deferred=tuple(plan.deferred), meta_resource_restarted=plan.restart_meta,
            message=message,
        )
