"""The settings of a ``canbus`` resource, read and checked without importing python-can or cantools.

Every problem names its key (``mapping: entities.signals[2].mqttType: ...``) and what is
expected; :func:`read_settings` returns them all at once with whatever could be read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MQTT_TYPES = ("float", "int")
TOP_LEVEL_KEYS = (
    "database", "mapping", "signals", "aggregates", "interface", "channel", "bitrate", "bus_options",
    "node", "strict", "replay", "loop", "min_interval", "on_change_only",
)
SIGNAL_KEYS = (
    "canName", "mqttName", "mqttType", "canMultiplier", "mqttEcho", "toCan", "fromCan", "min_interval",
    "on_change_only",
)
AGGREGATE_KEYS = ("mqttName", "toCan", "fromCan", "signals", "min_interval", "on_change_only")
AGGREGATE_SIGNAL_KEYS = ("canName", "mqttName", "mqttType", "canMultiplier", "fromCan", "toCan", "mqttEcho")
DEFAULT_INTERFACE = "socketcan"
DEFAULT_CHANNEL = "can0"


@dataclass(frozen=True)
class SignalMap:
    """One CAN signal as MQTT sees it (a mapped signal, or a member of an aggregate)."""

    can_name: str
    mqtt_name: str
    mqtt_type: str = "float"
    multiplier: float = 1.0
    echo: bool = False
    to_can: bool = False
    from_can: bool = True
    min_interval: float = 0.0
    on_change_only: bool = False
    where: str = field(default="", compare=False)
    """Where it was written, for problems: ``signals[0]`` or ``mapping: <file>: entities.signals[0]``."""


@dataclass(frozen=True)
class AggregateMap:
    """Several signals of one frame as one JSON message ``{"values": {...}}``."""

    mqtt_name: str
    signals: tuple[SignalMap, ...]
    to_can: bool = False
    from_can: bool = True
    min_interval: float = 0.0
    on_change_only: bool = False
    where: str = field(default="", compare=False)


@dataclass
class CanSettings:
    """A ``canbus`` resource's settings, paths resolved against the manifest's directory."""

    database: Path | None = None
    mapping: Path | None = None
    signals: list[SignalMap] = field(default_factory=list)
    aggregates: list[AggregateMap] = field(default_factory=list)
    interface: str | None = None
    channel: Any = None
    bitrate: int | None = None
    bus_options: dict[str, Any] = field(default_factory=dict)
    node: str | int | None = None
    strict: bool = False
    replay: Path | None = None
    loop: bool = False

    @property
    def uses_bus(self) -> bool:
        """Whether a bus is opened: always without ``replay``; with it, only when ``interface`` is set."""
        return self.replay is None or self.interface is not None


class _Reader:
    """Reads typed values out of a table and records problems under a key prefix."""

    def __init__(self, problems: list[str], prefix: str) -> None:
        self.problems = problems
        self.prefix = prefix

    def add(self, key: str, message: str) -> None:
        self.problems.append(f"{self.prefix}{key}: {message}")

    def boolean(self, table: Mapping[str, Any], key: str, default: bool) -> bool:
        value = table.get(key, default)
        if isinstance(value, bool):
            return value
        self.add(key, f"got {value!r}; expected true or false")
        return default

    def number(self, table: Mapping[str, Any], key: str, default: float, minimum: float | None = None) -> float:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.add(key, f"got {value!r}; expected a number")
            return default
        if minimum is not None and value < minimum:
            self.add(key, f"got {value!r}; expected a number >= {minimum:g}")
            return default
        return float(value)

    def name(self, table: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
        value = table.get(key, default)
        if value is None:
            self.add(key, "missing; expected a signal name")
            return None
        if not isinstance(value, str) or not value.strip():
            self.add(key, f"got {value!r}; expected a non-empty string")
            return None
        if any(char in value for char in "/+#\0"):
            self.add(key, f"{value!r} contains '/', '+', '#' or NUL; expected an MQTT name")
            return None
        return value

    def unknown(self, table: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                self.add(str(key), f"unknown key; expected one of: {', '.join(allowed)}")


def resolve(base: Path, value: str) -> Path:
    """``value`` as a path: ``~`` expanded, relative to ``base`` unless absolute."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _read_signal(
    reader: _Reader, table: Any, defaults: tuple[float, bool], member: bool = False
) -> SignalMap | None:
    if not isinstance(table, Mapping):
        reader.add("", f"got {table!r}; expected a table/object with canName")
        return None
    reader.unknown(table, AGGREGATE_SIGNAL_KEYS if member else SIGNAL_KEYS)
    can_name = reader.name(table, "canName")
    mqtt_name = reader.name(table, "mqttName", can_name) if can_name else None
    mqtt_type = table.get("mqttType", "float")
    if mqtt_type not in MQTT_TYPES:
        reader.add("mqttType", f"got {mqtt_type!r}; expected \"float\" or \"int\"")
        mqtt_type = "float"
    multiplier = reader.number(table, "canMultiplier", 1.0)
    if multiplier == 0:
        reader.add("canMultiplier", "got 0; expected a non-zero number")
        multiplier = 1.0
    signal = SignalMap(
        can_name=can_name or "",
        mqtt_name=mqtt_name or "",
        mqtt_type=mqtt_type,
        multiplier=multiplier,
        echo=reader.boolean(table, "mqttEcho", False),
        to_can=reader.boolean(table, "toCan", False),
        from_can=reader.boolean(table, "fromCan", True),
        min_interval=0.0 if member else reader.number(table, "min_interval", defaults[0], 0.0),
        on_change_only=False if member else reader.boolean(table, "on_change_only", defaults[1]),
        where=reader.prefix.rstrip("."),
    )
    return signal if can_name and mqtt_name else None


def _read_aggregate(reader: _Reader, table: Any, defaults: tuple[float, bool]) -> AggregateMap | None:
    if not isinstance(table, Mapping):
        reader.add("", f"got {table!r}; expected a table/object with mqttName and signals")
        return None
    reader.unknown(table, AGGREGATE_KEYS)
    mqtt_name = reader.name(table, "mqttName")
    members = table.get("signals")
    if not isinstance(members, list) or not members:
        reader.add("signals", f"got {members!r}; expected a non-empty list of signals")
        members = []
    signals = []
    for index, member in enumerate(members):
        signal = _read_signal(_Reader(reader.problems, f"{reader.prefix}signals[{index}]."), member, defaults, True)
        if signal is not None:
            signals.append(signal)
    if mqtt_name is None or len(signals) != len(members) or not signals:
        return None
    return AggregateMap(
        mqtt_name=mqtt_name,
        signals=tuple(signals),
        to_can=reader.boolean(table, "toCan", False),
        from_can=reader.boolean(table, "fromCan", True),
        min_interval=reader.number(table, "min_interval", defaults[0], 0.0),
        on_change_only=reader.boolean(table, "on_change_only", defaults[1]),
        where=reader.prefix.rstrip("."),
    )


def _read_entities(
    problems: list[str], prefix: str, signals: Any, aggregates: Any, defaults: tuple[float, bool], into: CanSettings
) -> None:
    for kind, raw, reader_function, target in (
        ("signals", signals, _read_signal, into.signals),
        ("aggregates", aggregates, _read_aggregate, into.aggregates),
    ):
        if raw is None:
            continue
        if not isinstance(raw, list):
            problems.append(f"{prefix}{kind}: got {raw!r}; expected a list")
            continue
        for index, table in enumerate(raw):
            item = reader_function(_Reader(problems, f"{prefix}{kind}[{index}]."), table, defaults)
            if item is not None:
                target.append(item)


def load_mapping_file(path: Path, problems: list[str], defaults: tuple[float, bool], into: CanSettings) -> None:
    """Read the original's JSON mapping (``{"entities": {"signals": [...], "aggregates": [...]}}``)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"mapping: file not found: {path}; expected the JSON mapping file")
        return
    except (OSError, UnicodeDecodeError) as error:
        problems.append(f"mapping: cannot read {path}: {error}")
        return
    except json.JSONDecodeError as error:
        problems.append(f"mapping: {path}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}")
        return
    entities = document.get("entities") if isinstance(document, dict) else None
    if not isinstance(entities, dict):
        expected = '{"entities": {"signals": [...], "aggregates": [...]}}'
        problems.append(f"mapping: {path}: expected an object {expected}")
        return
    _read_entities(
        problems, f"mapping: {path}: entities.", entities.get("signals"), entities.get("aggregates"), defaults, into
    )


def _check_names(problems: list[str], settings: CanSettings) -> None:
    """Two entities on one topic would mix their messages: refuse duplicate MQTT names."""
    seen: dict[str, str] = {}
    entities = [(s.mqtt_name, f"signal {s.can_name!r}") for s in settings.signals]
    entities += [(a.mqtt_name, "an aggregate") for a in settings.aggregates]
    for name, what in entities:
        if name in seen:
            problems.append(f"mqttName {name!r} is used by {seen[name]} and by {what}; expected unique names")
        seen.setdefault(name, what)


def read_settings(settings: Mapping[str, Any], base: Path) -> tuple[CanSettings, list[str]]:
    """Parse the settings (and the JSON mapping file they name); return them and every problem."""
    problems: list[str] = []
    top = _Reader(problems, "")
    top.unknown(settings, TOP_LEVEL_KEYS)
    result = CanSettings()
    defaults = (top.number(settings, "min_interval", 0.0, 0.0), top.boolean(settings, "on_change_only", False))
    for key in ("database", "mapping", "replay"):
        value = settings.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            top.add(key, f"got {value!r}; expected a path (relative to the manifest's directory)")
            continue
        setattr(result, key, resolve(base, value))
    if result.database is None and "database" not in settings:
        top.add("database", "missing; expected the path of the bus description (DBC, KCD, ARXML or SYM)")
    elif result.database is not None and not result.database.is_file():
        top.add("database", f"file not found: {result.database}; expected the bus description (DBC, KCD, ARXML, SYM)")
    if result.replay is not None and not result.replay.is_file():
        top.add("replay", f"file not found: {result.replay}; expected a candump -L log file")
    inline = "signals" in settings or "aggregates" in settings
    if result.mapping is not None and inline:
        top.add("mapping", "given together with inline signals/aggregates; expected one of the two")
    elif result.mapping is not None:
        load_mapping_file(result.mapping, problems, defaults, result)
    elif inline:
        _read_entities(problems, "", settings.get("signals"), settings.get("aggregates"), defaults, result)
    elif "mapping" not in settings:
        top.add("mapping", "missing; expected the JSON mapping file, or [[...settings.signals]] tables")
    _read_bus(top, settings, result)
    _check_names(problems, result)
    return result, problems


def _read_bus(top: _Reader, settings: Mapping[str, Any], result: CanSettings) -> None:
    interface = settings.get("interface")
    if interface is not None and (not isinstance(interface, str) or not interface):
        top.add("interface", f"got {interface!r}; expected a python-can interface name such as \"socketcan\"")
        interface = None
    channel = settings.get("channel")
    if channel is not None and (isinstance(channel, bool) or not isinstance(channel, str | int)):
        top.add("channel", f"got {channel!r}; expected a channel name or number such as \"can0\"")
        channel = None
    if result.replay is None:
        result.interface = interface or DEFAULT_INTERFACE
        result.channel = channel if channel is not None else (DEFAULT_CHANNEL if interface is None else None)
    else:
        result.interface, result.channel = interface, channel
    bitrate = settings.get("bitrate")
    if bitrate is not None and (isinstance(bitrate, bool) or not isinstance(bitrate, int) or bitrate <= 0):
        top.add("bitrate", f"got {bitrate!r}; expected a positive whole number of bit/s such as 500000")
        bitrate = None
    result.bitrate = bitrate
    options = settings.get("bus_options", {})
    if not isinstance(options, Mapping):
        top.add("bus_options", f"got {options!r}; expected a table of python-can bus arguments")
        options = {}
    result.bus_options = dict(options)
    node = settings.get("node")
    if node is not None and (isinstance(node, bool) or not isinstance(node, str | int)):
        top.add("node", f"got {node!r}; expected the database's node name or id")
        node = None
    result.node = node
    result.strict = top.boolean(settings, "strict", False)
    result.loop = top.boolean(settings, "loop", False)
    if "loop" in settings and result.replay is None:
        top.add("loop", "set without replay; expected replay = \"<candump -L log>\" too")
