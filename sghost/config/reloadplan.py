"""What a reload changes: the running manifest compared with the one just re-read.

Kept apart from the supervisor so that the rules are plain data in, plain data out:
which resources start, stop or restart, whether sghost's own meta-resource must
reconnect, and which changes can only take effect at the next start.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sghost.config.manifest import BrokerConfig, HostConfig, ResourceConfig


@dataclass(frozen=True)
class ReloadPlan:
    """The outcome of comparing two manifests; the supervisor carries it out."""

    config: HostConfig
    """The configuration to run with from now on (with the deferred parts as they were)."""
    added: list[str]
    removed: list[str]
    changed: list[str]
    """Resources restarted: their table, their restart policy or the ``[broker]`` changed."""
    restart_meta: bool
    """The meta-resource reconnects: ``[broker]`` or ``remote_control`` changed."""
    reopen_logs: bool
    """``log_dir``, ``log_max_bytes`` or ``log_backups`` changed."""
    deferred: list[str]
    """One line per change that takes effect only at the next start of sghost."""


def plan_reload(running: HostConfig, new: HostConfig, current: dict[str, ResourceConfig]) -> ReloadPlan:
    """Compare ``running`` with ``new``; ``current`` holds the resources that are not being removed."""
    effective, deferred = _defer_what_needs_a_restart(running, new)
    broker_changed = effective.broker != running.broker
    added = [name for name in effective.resources if name not in current]
    removed = [name for name in current if name not in effective.resources]
    changed = [
        name
        for name, config in effective.resources.items()
        if name in current and (broker_changed or _differs(config, current[name]))
    ]
    return ReloadPlan(
        config=effective,
        added=added,
        removed=removed,
        changed=changed,
        restart_meta=broker_changed or effective.remote_control != running.remote_control,
        reopen_logs=_log_settings(effective) != _log_settings(running),
        deferred=deferred,
    )


def _defer_what_needs_a_restart(running: HostConfig, new: HostConfig) -> tuple[HostConfig, list[str]]:
    effective, deferred = new, []
    if new.name != running.name:
        deferred.append(
            f"[host] name {running.name!r} -> {new.name!r}: the health topics move to the new name "
            "at the next start of sghost"
        )
        effective = dataclasses.replace(effective, name=running.name)
    if new.runtime_dir != running.runtime_dir:
        deferred.append("[host] runtime_dir: the control socket moves at the next start of sghost")
        effective = dataclasses.replace(effective, runtime_dir=running.runtime_dir)
    if new.uplink != running.uplink:
        deferred.append("[uplink]: the bridge is part of the embedded broker; it changes at the next start of sghost")
        effective = dataclasses.replace(effective, uplink=running.uplink)
    if _moves_embedded_broker(running.broker, new.broker):
        deferred.append(
            "[broker] embedded / port: the embedded broker is started and stopped with sghost; "
            "the whole [broker] change takes effect at the next start of sghost"
        )
        effective = dataclasses.replace(effective, broker=running.broker)
    return effective, deferred


def _moves_embedded_broker(old: BrokerConfig, new: BrokerConfig) -> bool:
    """Whether the change would need the embedded broker started, stopped or moved."""
    return (old.embedded or new.embedded) and (old.embedded, old.port) != (new.embedded, new.port)


def _differs(new: ResourceConfig, old: ResourceConfig) -> bool:
    return new.fingerprint() != old.fingerprint() or new.policy != old.policy


def _log_settings(config: HostConfig) -> tuple[object, ...]:
    return config.log_dir, config.log_max_bytes, config.log_backups
