"""The host's changes, pushed to whoever follows them over the control socket (``{"op": "events"}``).

The dashboard's process follows them to update its page within a second,
without polling. Each event is one JSON line, for example::

    {"event": "state", "resource": "climate", "at": 1767000000.1, "values": {"state": "running", ...}}

The supervisor never blocks on a follower: it writes what the socket takes and
keeps the rest; a follower that falls :data:`MAX_BACKLOG` bytes behind is
disconnected (it reconnects and reads ``status`` again). At most
:data:`MAX_FOLLOWERS` follow at once.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from typing import Any

from sghost.host.eventstream import (
    DeploymentProgress,
    DesiredStateApplied,
    Event,
    MetaResourceConnected,
    ResourceForgotten,
    ResourceStateChanged,
    UplinkChanged,
)
from sghost.host.socketfollower import SocketFollower

MAX_FOLLOWERS = 8
MAX_BACKLOG = 1 << 20
"""Bytes waiting for one follower before it is disconnected."""
STATE = "state"
HOST = "host"
"""Something host-wide changed (uplink, broker node, deployment, the desired state): read ``status`` again."""

log = logging.getLogger("sghost")


class EventFollowers:
    """The sockets that follow the host's events."""

    def __init__(self) -> None:
        self._followers: list[SocketFollower] = []

    @property
    def full(self) -> bool:
        return len(self._followers) >= MAX_FOLLOWERS

    def follow(self, sock: socket.socket) -> bool:
        """Send every later event to ``sock`` until it goes; False when too many follow already."""
        if self.full:
            return False
        self._followers.append(SocketFollower(sock, MAX_BACKLOG))
        return True

    def __call__(self, event: Event) -> None:
        """Follow the host's event stream: resource states as they are, host-wide changes as a hint."""
        match event:
            case ResourceStateChanged(name=name, snapshot=snapshot, retiring=False):
                self.state_changed(name, dict(snapshot))
            case (
                UplinkChanged() | MetaResourceConnected() | DeploymentProgress() | DesiredStateApplied()
                | ResourceForgotten()
            ):
                self.publish({"event": HOST, "kind": event.kind})

    def state_changed(self, resource: str, values: dict[str, Any]) -> None:
        """A resource's state, restarts, pid, error or what it waits for changed."""
        self.publish({"event": STATE, "resource": resource, "values": values})

    def publish(self, event: dict[str, Any]) -> None:
        if not self._followers:
            return
        data = (json.dumps({**event, "at": time.time()}, separators=(",", ":"), default=str) + "\n").encode()
        kept = []
        for follower in self._followers:
            if follower.send(data):
                kept.append(follower)
                continue
            if follower.too_far_behind:
                log.warning("host events: a follower fell %d KiB behind; disconnected", len(follower.backlog) // 1024)
            follower.close()
        self._followers = kept

    def close(self) -> None:
        """End every follower's stream (the host is stopping)."""
        for follower in self._followers:
            follower.close()
        self._followers.clear()
