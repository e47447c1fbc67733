"""The manifest's integration tables: ``[homeassistant]``, ``[metrics]`` and ``[hooks]``.

Parsed here rather than in :mod:`sghost.config.manifest` so that the tables
for the places users already look (Home Assistant, Prometheus, notification
scripts) stay together; ``manifest.py`` calls :func:`read_integrations`.
Problems are reported through the toolkit of :mod:`sghost.config.parsing`, in the
manifest's format (``<file>: <key path>: <what is wrong>; expected …``, with
``did you mean`` for a misspelt key).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sghost.config.parsing import Parser, Problems, boolean, number, read_table, show

TABLES = ("homeassistant", "metrics", "hooks")
"""The top-level tables parsed here."""
HOOK_EVENTS = ("on_state", "on_fatal", "on_backoff", "on_restart")
"""The ``[hooks]`` keys that name a program."""
DEFAULT_HOOK_TIMEOUT = 10.0
DISCOVERY_PREFIX = "homeassistant"
_TOPIC_LEVEL = re.compile(r"[^/+#\x00]+")


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


def _prefix(problems: Problems, keypath: str, value: Any) -> Any:
    if not isinstance(value, str):
        return problems.wrong_type(keypath, value, 'a topic prefix such as "homeassistant"')
    if not all(_TOPIC_LEVEL.fullmatch(level) for level in value.split("/")):
        return problems.add(
            keypath,
            f"{show(value)} is not a topic prefix; expected a topic prefix such as \"homeassistant\" "
            "(non-empty levels without '+', '#' or NUL)",
        )
    return value


def _textfile(problems: Problems, keypath: str, value: Any) -> Any:
    if not isinstance(value, str) or not value:
        return problems.wrong_type(keypath, value, "a path ending in .prom")
    if not value.endswith(".prom"):
        return problems.add(keypath, f"{show(value)} does not end in .prom; expected a path ending in .prom "
                            "(node_exporter's textfile collector reads only *.prom files)")
    textfile = problems.base / Path(value).expanduser()
    if not textfile.parent.is_dir():
        return problems.add(keypath, f"directory not found: {textfile.parent}; expected an existing directory")
    return textfile


def _argv(problems: Problems, keypath: str, value: Any) -> Any:
    """An argv array whose program exists and is executable (run without a shell)."""
    expected = 'an array of strings, program first, such as ["/usr/local/bin/notify", "--flag"]'
    if not isinstance(value, list) or not value or not all(isinstance(item, str) and item for item in value):
        return problems.wrong_type(keypath, value, expected)
    program = value[0]
    if os.sep in program:
        path = problems.base / Path(program).expanduser()
        if not path.is_file() or not os.access(path, os.X_OK):
            return problems.add(keypath, f"{path} is not an executable file; expected the program to run (no shell)")
        return (str(path), *value[1:])
    import shutil  # here: the running supervisor should not carry it (with bz2 and lzma, 0.8 MiB)

    if shutil.which(program) is None:
        return problems.add(keypath, f"program {show(program)} not found on PATH; expected an executable (no shell)")
    return tuple(value)


_HOMEASSISTANT: dict[str, Parser] = {"discovery": boolean, "prefix": _prefix}
_METRICS: dict[str, Parser] = {"textfile": _textfile}
_HOOKS: dict[str, Parser] = {**dict.fromkeys(HOOK_EVENTS, _argv), "hook_timeout": number(0, strict=True)}


def _read_homeassistant(problems: Problems, table: Mapping[str, Any]) -> HomeAssistantConfig:
    return HomeAssistantConfig(**read_table(problems, ("homeassistant",), table, _HOMEASSISTANT))


def _read_metrics(problems: Problems, table: Mapping[str, Any]) -> MetricsConfig:
    return MetricsConfig(**read_table(problems, ("metrics",), table, _METRICS))


def _read_hooks(problems: Problems, table: Mapping[str, Any]) -> HooksConfig:
    return HooksConfig(**read_table(problems, ("hooks",), table, _HOOKS))
