"""Tables for ``sghost status``: one host's snapshot, and helpers the fleet view shares.

The snapshot is :meth:`sghost.supervisor.Supervisor.snapshot` (also the JSON
of the retained ``data/<host>/health``)::

    {"host": str, "version": str, "pid": int, "manifest": str, "uptime": int,
     "cpu": float, "memory": float, "memory_available_mb": int, "broker_connected": bool,
     "resources": {name: {"state", "restarts", "pid", "uptime", "cpu", "memory", "error",
                          "dropped", "refused", "queued", "connected", "broker",
                          "waiting_for", "last_stderr" (control socket only)}}}

Missing keys are shown as ``-``, so documents of older or newer versions still print.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

NONE = "-"
STATUS_COLUMNS = (
    "RESOURCE", "STATE", "PID", "RESTARTS", "UPTIME", "CPU", "MEMORY", "DROPPED", "REFUSED", "LAST ERROR",
)
ACTIVE_STATES = ("starting", "running", "stopping")
FAILED_STATES = ("backoff", "fatal", "stopped")
"""States in which the last stderr line is shown beside the error (when there is an error)."""
"""States in which a resource has a process, so uptime, CPU and memory mean something."""


def format_duration(seconds: Any) -> str:
    """A short human duration: ``45s``, ``12m05s``, ``3h12m``, ``2d03h``; ``-`` when unknown."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        return NONE
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def format_pid(pid: Any) -> str:
    """A pid, or ``-`` for none (the health topics spell "no process" as 0)."""
    return str(pid) if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else NONE


def format_error(error: Any) -> str:
    """The last error on one line; ``-`` for none (health spells it ``none``)."""
    if error is None or error == "" or error == "none":
        return NONE
    return " ".join(str(error).split())


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _cpu(value: Any) -> str:
    number = _number(value)
    return NONE if number is None else f"{number:.1f}%"


def _memory(value: Any) -> str:
    number = _number(value)
    return NONE if number is None else f"{number:.1f} MiB"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else NONE


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row[:-1], widths[:-1], strict=True)]
        lines.append("  ".join([*cells, str(row[-1])]).rstrip())
    return "\n".join(lines)


def resource_row(name: str, values: Mapping[str, Any]) -> list[str]:
    """One resource as the status table shows it (RESOURCE .. LAST ERROR).

    DROPPED and REFUSED count the messages the resource could not send (QoS 0
    dropped, QoS >= 1 refused with ``PublishError``) since sghost started.
    """
    state = str(values.get("state") or NONE)
    active = state in ACTIVE_STATES
    return [
        name,
        state,
        format_pid(values.get("pid")),
        str(values.get("restarts", NONE)),
        format_duration(values.get("uptime")) if active else NONE,
        _cpu(values.get("cpu")) if active else NONE,
        _memory(values.get("memory")) if active else NONE,
        _count(values.get("dropped")),
        _count(values.get("refused")),
        _last_column(state, values),
    ]


def _last_column(state: str, values: Mapping[str, Any]) -> str:
    """The error; what a waiting resource waits for; the last stderr line beside a failed one's error."""
    waiting = values.get("waiting_for")
    if state == "waiting" and isinstance(waiting, list | str) and waiting:
        names = waiting if isinstance(waiting, str) else ", ".join(str(name) for name in waiting)
        return f"waiting for {names}"
    error = format_error(values.get("error"))
    stderr = values.get("last_stderr")
    if error != NONE and state in FAILED_STATES and isinstance(stderr, str) and stderr.strip():
        return f"{error} | last stderr: {' '.join(stderr.split())}"
    return error


def _resources(snapshot: Mapping[str, Any]) -> Mapping[str, Any]:
    resources = snapshot.get("resources")
    return resources if isinstance(resources, Mapping) else {}


def format_header(snapshot: Mapping[str, Any]) -> str:
    """``host NAME  pid N  sghost VERSION  up 3h12m  broker connected: yes``."""
    connected = snapshot.get("broker_connected")
    broker = NONE if connected is None else ("yes" if connected else "no")
    return (
        f"host {snapshot.get('host', NONE)}  pid {format_pid(snapshot.get('pid'))}  "
        f"sghost {snapshot.get('version', NONE)}  up {format_duration(snapshot.get('uptime'))}  "
        f"broker connected: {broker}"
    )


def format_uplink(uplink: Mapping[str, Any]) -> str:
    """``uplink connected since 12:03:04 UTC  queued 0  dropped 0``."""
    since = uplink.get("since")
    when = time.strftime("%H:%M:%S UTC", time.gmtime(since)) if _number(since) is not None else NONE
    queued, dropped = uplink.get("queued"), uplink.get("dropped")
    return (
        f"uplink {uplink.get('state', NONE)} since {when}  queued {NONE if queued is None else queued}  "
        f"dropped {NONE if dropped is None else dropped}"
    )


def format_status(snapshot: Mapping[str, Any]) -> str:
    """The header line, then one table row per resource (in the manifest's order)."""
    resources = _resources(snapshot)
    rows = [
        resource_row(str(name), values if isinstance(values, Mapping) else {}) for name, values in resources.items()
    ]
    lines = [format_header(snapshot)]
    if snapshot.get("manifest"):
        lines.append(f"manifest {snapshot['manifest']}")
    uplink = snapshot.get("uplink")
    if isinstance(uplink, Mapping):
        lines.append(format_uplink(uplink))
    lines.append("")
    lines.append(format_table(STATUS_COLUMNS, rows) if rows else "(no resources)")
    return "\n".join(lines)


__all__ = ["format_duration", "format_header", "format_status", "format_table", "resource_row"]
