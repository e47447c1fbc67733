"""What a resource process tells its supervisor, as JSON lines on a private pipe (not MQTT).

Kinds: ``ready`` (setup done, ``topics`` = announced capability topics),
``heartbeat``, ``connected``, ``disconnected``, ``connect_error`` (``text``),
``plugin_error`` (``text``: the exception's one-line text), ``counters``
(``published``, ``refused``, ``dropped``, ``queued``: the resource's publish
counters since its process started, sent when they change), ``ready_signal``
(the plugin called ``context.ready()``; ``ready`` carries ``signal: true``
when the type waits for it); from the
meta-resource only, ``remote`` (``id``, ``op``, ``payload``: a remote-control command) and
``uplink`` (``state``, ``queued``, ``dropped``: the bridge to the central broker).
"""

from __future__ import annotations

import json
import os
from typing import Any

READY = "ready"
HEARTBEAT = "heartbeat"
CONNECTED = "connected"
DISCONNECTED = "disconnected"
CONNECT_ERROR = "connect_error"
PLUGIN_ERROR = "plugin_error"
COUNTERS = "counters"
REMOTE = "remote"
READY_SIGNAL = "ready_signal"
UPLINK = "uplink"


class EventWriter:
    """The child's end: writes one JSON object per line to a pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"kind": kind, **fields}, separators=(",", ":")) + "\n"
        data = line.encode()
        try:
            while data:
                written = os.write(self.fd, data)
                data = data[written:]
        except (BrokenPipeError, OSError):
            pass  # the supervisor is gone; the zygote or the parent-death signal ends us


def parse_event(line: str) -> dict[str, Any] | None:
    """Parse one event line; ``None`` for a line that is not a valid event."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("kind"), str):
        return None
    return event
