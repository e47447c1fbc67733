"""Deployment documents from ``command/<host>/deploy`` to the supervisor, over the meta-resource's events pipe.

The events pipe carries JSON lines of at most 16 KiB (:mod:`sghost.process.lines`),
and a document may be 1 MiB and a little more (the gateway must say why it
rejects an oversized one), so the meta-resource sends it in numbered base64
parts that :class:`Reassembler` puts together on the supervisor's side.
Nothing is checked here: the supervisor decides (:mod:`sghost.host.deployments`).
"""

from __future__ import annotations

import base64
import itertools
from typing import Any

from sghost.deploy.document import MAX_DOCUMENT_BYTES

DEPLOY_COMMAND = "deploy"
"""The meta-resource's command signal: ``command/<host>/deploy``."""
DEPLOY_PART = "deploy_part"
"""The event kind: ``id``, ``index``, ``count``, ``data`` (base64)."""
PART_BYTES = 2048
"""Each part's event line stays under PIPE_BUF (4096), so a heartbeat written by the main loop at the same
moment can never land inside it (writes up to PIPE_BUF are atomic)."""
MAX_PARTS = (4 * MAX_DOCUMENT_BYTES) // PART_BYTES
"""Beyond this the meta-resource sends only the first parts: enough for the supervisor to reject by size."""


def split(payload: bytes, message_id: int) -> list[dict[str, Any]]:
    """The events that carry ``payload``."""
    chunks = [payload[start:start + PART_BYTES] for start in range(0, len(payload), PART_BYTES)] or [b""]
    if len(chunks) > MAX_PARTS:
        chunks = chunks[:MAX_PARTS]
    return [
        {"id": message_id, "index": index, "count": len(chunks), "data": base64.b64encode(chunk).decode("ascii")}
        for index, chunk in enumerate(chunks)
    ]


class Relay:
    """The meta-resource's side: an MQTT command callback that forwards each document in parts."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self._ids = itertools.count(1)

    def register(self, resource: Any) -> None:
        resource.register_incoming_command(DEPLOY_COMMAND, self.forward, echo=False)

    def forward(self, resource: Any, messagetype: str, servicename: str, signalname: str, payload: str) -> None:
        for part in split(payload.encode("utf-8"), next(self._ids)):
            self.channel.send(DEPLOY_PART, **part)


class Reassembler:
    """The supervisor's side: whole documents from parts (a broken sequence is dropped, the next one starts)."""

    def __init__(self) -> None:
        self._id: Any = None
        self._parts: list[bytes] = []

    def feed(self, event: dict[str, Any]) -> bytes | None:
        index, count = event.get("index"), event.get("count")
        if index == 0:
            self._id, self._parts = event.get("id"), []
        if event.get("id") != self._id or index != len(self._parts) or not isinstance(count, int):
            return None
        try:
            self._parts.append(base64.b64decode(str(event.get("data", ""))))
        except ValueError:
            self._id = None
            return None
        if len(self._parts) == count:
            whole, self._id, self._parts = b"".join(self._parts), None, []
            return whole
        return None
