"""A CAN bus as an sghost resource: the Secure Gateway's CAN adapter as a plugin (type ``canbus``).

Signals of the bus description (DBC, KCD, ARXML, SYM; read by cantools) become data
topics, and ``toCan`` signals commands, as the original's JSON mapping says. See README.md.
This module stays light: python-can and cantools are imported in ``setup`` and
``check_settings`` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sghost
from sghost.plugins import settings_directory

from sghost_canbus.settings import CanSettings, read_settings

if TYPE_CHECKING:
    from sghost.context import ResourceContext
    from sghost.plugins import Register

    from sghost_canbus.plan import Plan
    from sghost_canbus.replay import LoggedFrame

TYPE_NAME = "canbus"


@dataclass
class _Loaded:
    """Settings, mapping, database and replay log read and resolved, with every problem found."""

    settings: CanSettings
    problems: list[str]
    plan: Plan | None = None
    frames: list[LoggedFrame] = field(default_factory=list)


def _load(settings: Mapping[str, Any], base: Path, logger: Any = None) -> _Loaded:
    from sghost_canbus.database import DatabaseError, load_database
    from sghost_canbus.plan import build_plan
    from sghost_canbus.replay import ReplayError, read_log

    parsed, problems = read_settings(settings, base)
    loaded = _Loaded(parsed, problems)
    if parsed.replay is not None and parsed.replay.is_file():
        try:
            loaded.frames = read_log(parsed.replay)
        except ReplayError as error:
            problems.append(f"replay: {error}")
    if parsed.database is None or not parsed.database.is_file():
        return loaded
    try:
        database, facts = load_database(parsed.database, parsed.strict, logger)
    except DatabaseError as error:
        problems.append(f"database: {error}")
        return loaded
    loaded.plan, found = build_plan(parsed, database, facts)
    problems.extend(found)
    return loaded


def check_settings(settings: Mapping[str, Any]) -> list[str]:
    """Every problem of a ``canbus`` resource's settings, its mapping and its database (for ``sghost check``)."""
    return _load(settings, settings_directory()).problems


def open_bus(parsed: CanSettings) -> Any:
    """The python-can bus the settings name; ``RuntimeError`` naming interface, channel and why not."""
    import can

    options: dict[str, Any] = dict(parsed.bus_options)
    if parsed.bitrate is not None:
        options["bitrate"] = parsed.bitrate
    try:
        return can.Bus(interface=parsed.interface, channel=parsed.channel, **options)
    except Exception as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise RuntimeError(
            f"cannot open the CAN bus: interface {parsed.interface!r}, channel {parsed.channel!r}: {reason}"
        ) from None


def setup(context: ResourceContext) -> None:
    """Register the mapped signals, open the bus (or the replay) and start the reader thread."""
    from sghost_canbus.bridge import Bridge

    loaded = _load(context.settings, context.base_directory, context.logger)
    parsed, plan, frames = loaded.settings, loaded.plan, loaded.frames
    if loaded.problems or plan is None:
        raise ValueError("invalid settings: " + "; ".join(loaded.problems))
    resource = context.resource
    bus = open_bus(parsed) if parsed.uses_bus else None
    if bus is not None:
        context.on_stop(bus.shutdown)
    bridge = Bridge(
        context.name, plan, resource.send_data, context.logger, bus,
        connected=lambda: resource.is_connected, drop_while_disconnected=resource.qos == 0,
    )
    for name in bridge.outputs:
        resource.register_outgoing_data(name)
    for name, (_, entity) in plan.commands.items():
        if getattr(entity, "echo", False) and name not in bridge.outputs:
            resource.register_outgoing_data(name)
        resource.register_incoming_command(name, bridge.command_callback(name), echo=False)
    if parsed.replay is not None:
        context.run_in_thread(lambda stopping: bridge.replay(frames, parsed.loop, stopping), f"{context.name}-replay")
    elif bus is not None:
        context.run_in_thread(bridge.read_bus, f"{context.name}-reader")
    source = f"replay {parsed.replay}" if parsed.replay else f"{parsed.interface} {parsed.channel}"
    context.logger.info(
        "CAN bus %s: %d data topics, %d commands", source, len(bridge.outputs), len(plan.commands)
    )


@sghost.hookimpl
def register_resource_types(register: Register) -> None:
    """Offer the resource type ``canbus``."""
    register(
        TYPE_NAME, setup, check_settings=check_settings,
        description="a CAN bus on MQTT: signals of a DBC/KCD/ARXML/SYM database, mapped as the Secure Gateway did",
    )
