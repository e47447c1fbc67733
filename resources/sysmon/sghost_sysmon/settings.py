"""The settings of a ``sysmon`` resource: read, checked, and every problem named by its key.

Light on purpose (no psutil): ``sghost check`` imports it in the supervisor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

MIN_INTERVAL = 0.1
"""Seconds; below this the samples would cost more than they tell."""


@dataclass(frozen=True)
class DeadBands:
    """How far a figure must move from the value last sent before it is sent again (0 = every change)."""

    cpu: float = 1.0
    """Percentage points of ``cpu_percent``."""
    load: float = 0.1
    """Of ``load_1``, ``load_5``, ``load_15``."""
    memory: float = 0.05
    """Fraction of the last sent ``memory_*_mb`` value (at least 1 MiB)."""
    disk: float = 1.0
    """Percentage points of ``disk_*_used_percent``; ``disk_*_free_mb`` moves with it."""
    temperature: float = 1.0
    """Degrees Celsius."""
    network: float = 1048576.0
    """Bytes of ``net_*_bytes_*`` counters."""
    uptime: float = 0.1
    """Fraction ``uptime`` must grow by (as sghost's health: 10 %)."""


@dataclass(frozen=True)
class SysmonSettings:
    """A ``sysmon`` resource's settings, with their defaults."""

    interval: float = 10.0
    disks: tuple[str, ...] = ("/",)
    interfaces: tuple[str, ...] | None = None
    """``None``: every interface present at start but the loopback."""
    temperatures: bool = True
    deadbands: DeadBands = field(default_factory=DeadBands)


KEYS = tuple(item.name for item in fields(SysmonSettings))
DEADBAND_KEYS = tuple(item.name for item in fields(DeadBands))


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _strings(key: str, value: Any, problems: list[str]) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        problems.append(f"{key}: expected a list of non-empty strings, not {_show(value)}")
        return None
    return tuple(dict.fromkeys(value))


def _read_disks(value: Any, problems: list[str]) -> tuple[str, ...] | None:
    disks = _strings("disks", value, problems)
    if disks is None:
        return None
    relative = [disk for disk in disks if not disk.startswith("/")]
    if relative:
        problems.append(f"disks: expected absolute mount points (starting with '/'), not {relative!r}")
        return None
    return disks


def _read_deadbands(value: Any, problems: list[str]) -> DeadBands | None:
    if not isinstance(value, Mapping):
        problems.append(f"deadbands: expected a table, not {_show(value)}")
        return None
    values: dict[str, float] = {}
    for key, band in value.items():
        if key not in DEADBAND_KEYS:
            problems.append(f"deadbands.{key}: unknown key; expected one of {', '.join(DEADBAND_KEYS)}")
        elif not _is_number(band) or band < 0:
            problems.append(f"deadbands.{key}: expected a number >= 0, not {_show(band)}")
        else:
            values[key] = float(band)
    return DeadBands(**values)


def read_settings(settings: Mapping[str, Any]) -> tuple[SysmonSettings, list[str]]:
    """The settings with defaults filled in, and the problems found (``[]`` when fine)."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    for key, value in settings.items():
        if key not in KEYS:
            problems.append(f"{key}: unknown key; expected one of {', '.join(KEYS)}")
        elif key == "interval":
            if not _is_number(value) or value < MIN_INTERVAL:
                problems.append(f"interval: expected a number of seconds >= {MIN_INTERVAL}, not {_show(value)}")
            else:
                values[key] = float(value)
        elif key == "temperatures":
            if not isinstance(value, bool):
                problems.append(f"temperatures: expected true or false, not {_show(value)}")
            else:
                values[key] = value
        else:
            reader = {"disks": _read_disks, "interfaces": lambda v, p: _strings("interfaces", v, p),
                      "deadbands": _read_deadbands}[key]
            parsed = reader(value, problems)
            if parsed is not None:
                values[key] = parsed
    return SysmonSettings(**values), problems


def check_settings(settings: Mapping[str, Any]) -> list[str]:
    """The ``check_settings`` hook of type ``sysmon``: one line per problem, each naming its key."""
    return read_settings(settings)[1]
