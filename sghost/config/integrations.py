"""The manifest's integration tables: ``[homeassistant]``, ``[metrics]`` and ``[hooks]``.

Parsed here rather than in :mod:`sghost.config.manifest` so that the tables
for the places users already look (Home Assistant, Prometheus, notification
scripts) stay together; ``manifest.py`` calls :func:`read_integrations`.
Problems are reported through the manifest's problem collector, in its format
(``<file>: <key path>: <what is wrong>; <what is expected>``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sghost.config.suggest import did_you_mean

TABLES = ("homeassistant", "metrics", "hooks")
"""The top-level tables parsed here."""
HOOK_EVENTS = ("on_state", "on_fatal", "on_backoff", "on_restart")
"""The ``[hooks]`` keys that name a program."""
DEFAULT_HOOK_TIMEOUT = 10.0
DISCOVERY_PREFIX = "homeassistant"
_TOPIC_LEVEL = re.compile(r"[^/+#\x00]+")


class Problems(Protocol):
    """The manifest's problem collector (``manifest._Problems``)."""

    base: Path

    def add(self, keypath: str, message: str) -> Any: ...


@dataclass(frozen=True)
class HomeAssistantConfig:
    """``[homeassistant]``: MQTT discovery for Home Assistant (off unless ``discovery = true``)."""

    discovery: bool = False
    prefix: str = DISCOVERY_PREFIX


@dataclass(frozen=True)
class MetricsConfig:
    """``[metrics]``: a Prometheus text file for node_exporter's textfile collector (none by default)."""

    textfile: Path | None = None


@dataclass(frozen=True)
class HooksConfig:
    """``[hooks]``: programs run (argv, no shell) when a resource changes state."""

    on_state: tuple[str, ...] = ()
    on_fatal: tuple[str, ...] = ()
    on_backoff: tuple[str, ...] = ()
    on_restart: tuple[str, ...] = ()
    hook_timeout: float = DEFAULT_HOOK_TIMEOUT

    def command(self, event: str) -> tuple[str, ...]:
        """The argv for ``event`` (one of :data:`HOOK_EVENTS`); empty when none is set."""
        return tuple(getattr(self, event))

    @property
    def any(self) -> bool:
        return any(self.command(event) for event in HOOK_EVENTS)


def read_integrations(problems: Problems, sections: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Parse the three tables (already checked to be tables); return HostConfig keyword arguments."""
    return {
        "homeassistant": _read_homeassistant(problems, sections.get("homeassistant", {})),
        "metrics": _read_metrics(problems, sections.get("metrics", {})),
        "hooks": _read_hooks(problems, sections.get("hooks", {})),
    }


def _kind(value: Any) -> str:
    kinds = {bool: "a boolean", str: "a string", int: "an integer", float: "a float", list: "an array"}
    return kinds.get(type(value), "a date/time")


def _unknown(problems: Problems, table: str, key: str, allowed: tuple[str, ...]) -> None:
    expected = did_you_mean(key, allowed) or f"expected one of: {', '.join(allowed)}"
    problems.add(f"{table}.{key}", f"unknown key; {expected}")


def _read_homeassistant(problems: Problems, table: Mapping[str, Any]) -> HomeAssistantConfig:
    allowed = ("discovery", "prefix")
    values: dict[str, Any] = {}
    for key, value in table.items():
        keypath = f"homeassistant.{key}"
        if key == "discovery":
            if isinstance(value, bool):
                values[key] = value
            else:
                problems.add(keypath, f"got {_kind(value)}; expected true or false")
        elif key == "prefix":
            if isinstance(value, str) and all(_TOPIC_LEVEL.fullmatch(level) for level in value.split("/")):
                values[key] = value
            else:
                problems.add(
                    keypath,
                    f"got {value!r}; expected a topic prefix such as \"homeassistant\" "
                    "(non-empty levels without '+', '#' or NUL)",
                )
        else:
            _unknown(problems, "homeassistant", key, allowed)
    return HomeAssistantConfig(**values)


def _read_metrics(problems: Problems, table: Mapping[str, Any]) -> MetricsConfig:
    textfile: Path | None = None
    for key, value in table.items():
        keypath = f"metrics.{key}"
        if key != "textfile":
            _unknown(problems, "metrics", key, ("textfile",))
        elif not isinstance(value, str) or not value:
            problems.add(keypath, f"got {value!r}; expected a path ending in .prom")
        elif not value.endswith(".prom"):
            problems.add(keypath, f"{value!r} does not end in .prom; expected a path ending in .prom "
                         "(node_exporter's textfile collector reads only *.prom files)")
        else:
            textfile = problems.base / Path(value).expanduser()
            if not textfile.parent.is_dir():
                problems.add(keypath, f"directory not found: {textfile.parent}; expected an existing directory")
    return MetricsConfig(textfile=textfile)


def _read_hooks(problems: Problems, table: Mapping[str, Any]) -> HooksConfig:
    allowed = (*HOOK_EVENTS, "hook_timeout")
    values: dict[str, Any] = {}
    for key, value in table.items():
        keypath = f"hooks.{key}"
        if key in HOOK_EVENTS:
            argv = _argv(problems, keypath, value)
            if argv is not None:
                values[key] = argv
        elif key == "hook_timeout":
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
                values[key] = float(value)
            else:
                problems.add(keypath, f"got {value!r}; expected a number of seconds > 0")
        else:
            _unknown(problems, "hooks", key, allowed)
    return HooksConfig(**values)


def _argv(problems: Problems, keypath: str, value: Any) -> tuple[str, ...] | None:
    """An argv array whose program exists and is executable (run without a shell)."""
    expected = 'expected an array of strings, program first, such as ["/usr/local/bin/notify", "--flag"]'
    if not isinstance(value, list) or not value or not all(isinstance(item, str) and item for item in value):
        problems.add(keypath, f"got {value!r}; {expected}")
        return None
    program = value[0]
    if os.sep in program:
        path = problems.base / Path(program).expanduser()
        if not path.is_file() or not os.access(path, os.X_OK):
            problems.add(keypath, f"{path} is not an executable file; expected the program to run (no shell)")
            return None
        return (str(path), *value[1:])
    import shutil  # here: the running supervisor should not carry it (with bz2 and lzma, 0.8 MiB)

    if shutil.which(program) is None:
        problems.add(keypath, f"program {program!r} not found on PATH; expected an executable (no shell)")
        return None
    return tuple(value)
