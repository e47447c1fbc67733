"""What the supervisor tells the meta-resource process: named, typed messages, one JSON object per line.

The counterpart of :mod:`sghost.process.events` (what a process tells the
supervisor, including the meta-resource's ``remote`` and ``uplink`` events).
Each message is a JSON object with ``op`` naming its kind:

- ``update`` (``name``, ``values``): one resource's ``<res>_<field>`` topics, as text;
- ``health`` (``document``): the new ``data/<host>/health`` document;
- ``lost`` (``topics``): publish retained ``False`` on a dead process's capability topics;
- ``forget`` (``name``): clear a removed resource's retained topics;
- ``homeassistant`` (``discovery``, ``prefix``, ``version``, ``remote_control``, ``resources``): configure discovery;
- ``value`` (``signal``, ``payload``): publish one retained, announced data signal of the meta-resource
  (``deployment``, ``deploy_rejected``);
- ``answer`` (``id``, ``text``): the answer to a ``remote`` command event;
- ``rebirth``: publish presence, announcements and every health topic again;
- ``stop``: publish presence ``False`` and end.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypedDict

UPDATE: Literal["update"] = "update"
HEALTH: Literal["health"] = "health"
LOST: Literal["lost"] = "lost"
FORGET: Literal["forget"] = "forget"
HOMEASSISTANT: Literal["homeassistant"] = "homeassistant"
VALUE: Literal["value"] = "value"
ANSWER: Literal["answer"] = "answer"
REBIRTH: Literal["rebirth"] = "rebirth"
STOP: Literal["stop"] = "stop"


class Update(TypedDict):
    op: Literal["update"]
    name: str
    values: dict[str, str]


class Health(TypedDict):
    op: Literal["health"]
    document: dict[str, Any]


class Lost(TypedDict):
    op: Literal["lost"]
    topics: list[str]


class Forget(TypedDict):
    op: Literal["forget"]
    name: str


class DiscoveryResource(TypedDict):
    type_name: str
    version: str


class HomeAssistant(TypedDict):
    op: Literal["homeassistant"]
    discovery: bool
    prefix: str
    version: str
    remote_control: bool
    resources: dict[str, DiscoveryResource]


class Value(TypedDict):
    op: Literal["value"]
    signal: str
    payload: str


class Answer(TypedDict):
    op: Literal["answer"]
    id: int | None
    text: str


class Rebirth(TypedDict):
    op: Literal["rebirth"]


class Stop(TypedDict):
    op: Literal["stop"]


MetaMessage = Update | Health | Lost | Forget | HomeAssistant | Value | Answer | Rebirth | Stop


def encode(message: MetaMessage) -> bytes:
    """One message as the line the pipe carries."""
    return (json.dumps(message, separators=(",", ":")) + "\n").encode()


def decode(line: str) -> dict[str, Any] | None:
    """One line read from the pipe; None for a line that is not a message (no string ``op``)."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        return None
    return message
