"""Prometheus metrics: the supervisor's status snapshot as the text exposition format.

One pure function, :func:`render`, turns the health snapshot (``sghost.host.sampling``) into the
text that ``[metrics] textfile`` holds (for node_exporter's textfile
collector) and ``sghost metrics`` prints. :func:`write_atomically` replaces
that file so that a reader never sees half of it. Nothing here imports
``prometheus_client``: the format is plain text.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sghost.health.states import STATES

PROCESSES = "processes"
"""The snapshot key of each running resource's ``cpu_seconds``, ``memory_bytes`` and ``start_time``."""

_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("sghost_host_info", "gauge", "The sghost host: its [host] name and sghost version; always 1."),
    ("sghost_broker_connected", "gauge", "1 while sghost's meta-resource is connected to the MQTT broker."),
    ("sghost_uplink_connected", "gauge", "1 while the uplink to the upstream broker is connected."),
    ("sghost_resource_up", "gauge", "1 while the resource is in state running."),
    ("sghost_resource_state", "gauge", "1 for the resource's current state, 0 for the others."),
    ("sghost_resource_restarts_total", "counter", "Processes started for the resource after an earlier one ended."),
    ("sghost_resource_start_time_seconds", "gauge", "Start time of the resource's process since the Unix epoch."),
    ("sghost_resource_cpu_seconds_total", "counter", "User and system CPU time of the resource's process."),
    ("sghost_resource_resident_memory_bytes", "gauge", "Resident memory of the resource's process."),
    ("sghost_resource_messages_dropped_total", "counter", "Messages the resource dropped (health: dropped)."),
    ("sghost_resource_messages_refused_total", "counter", "Messages the resource refused to send (health: refused)."),
)


def render(snapshot: Mapping[str, Any]) -> str:
    """The snapshot as Prometheus text: every family with HELP and TYPE, one sample a line."""
    samples = _samples(snapshot)
    lines: list[str] = []
    for name, kind, help_text in _FAMILIES:
        family = samples.get(name)
        if not family:
            continue
        lines.append(f"# HELP {name} {_escape_help(help_text)}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{_labels(labels)} {_number(value)}" for labels, value in family)
    return "\n".join(lines) + "\n"


Sample = tuple[dict[str, str], float]


def _samples(snapshot: Mapping[str, Any]) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {name: [] for name, _kind, _help in _FAMILIES}
    host = str(snapshot.get("host", ""))
    samples["sghost_host_info"].append(({"host": host, "version": str(snapshot.get("version", ""))}, 1))
    samples["sghost_broker_connected"].append(({}, _flag(snapshot.get("broker_connected"))))
    uplink = snapshot.get("uplink")
    if uplink is not None:
        samples["sghost_uplink_connected"].append(({}, _flag(_uplink_connected(uplink))))
    processes = snapshot.get(PROCESSES) or {}
    for name, values in (snapshot.get("resources") or {}).items():
        _resource_samples(samples, name, values, processes.get(name) or {})
    return samples


def _resource_samples(
    samples: dict[str, list[Sample]], name: str, values: Mapping[str, Any], process: Mapping[str, Any]
) -> None:
    label = {"resource": name}
    state = str(values.get("state", ""))
    samples["sghost_resource_up"].append((label, _flag(state == "running")))
    for each in _with(STATES, state):
        samples["sghost_resource_state"].append(({**label, "state": each}, _flag(each == state)))
    samples["sghost_resource_restarts_total"].append((label, float(values.get("restarts", 0))))
    if values.get("pid") and process:
        samples["sghost_resource_start_time_seconds"].append((label, float(process["start_time"])))
        samples["sghost_resource_cpu_seconds_total"].append((label, float(process["cpu_seconds"])))
        samples["sghost_resource_resident_memory_bytes"].append((label, float(process["memory_bytes"])))
    samples["sghost_resource_messages_dropped_total"].append((label, float(values.get("dropped", 0))))
    samples["sghost_resource_messages_refused_total"].append((label, float(values.get("refused", 0))))


def _with(states: Iterable[str], state: str) -> list[str]:
    """Every known state, and the current one if it is new to this module."""
    known = list(states)
    return known if state in known or not state else [*known, state]


def _uplink_connected(uplink: Any) -> bool:
    if isinstance(uplink, Mapping):
        return bool(uplink.get("connected"))
    return bool(uplink)


def _flag(value: Any) -> float:
    return 1.0 if value else 0.0


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape_label(value)}"' for key, value in labels.items()) + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: written to a hidden ``.tmp`` file in the same directory, then renamed.

    The temporary name does not end in ``.prom``, so node_exporter's textfile
    collector never reads a half-written file. Raises OSError.
    """
    import tempfile  # here: only a metrics file needs it, and it brings shutil (0.8 MiB)

    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
