"""The uplink as the supervisor knows it: the bridge's state and queue counts, reported by the meta-resource."""

from __future__ import annotations

import logging
import time
from typing import Any

from sghost.host.eventstream import EventStream, UplinkChanged

log = logging.getLogger("sghost")

UPLINK_DROP_WARNING_INTERVAL = 60.0
"""Seconds between warnings about messages the uplink's queue bound dropped."""


class UplinkStatus:
    """The ``uplink`` entry of the health document; publishes :class:`UplinkChanged` when the state changes."""

    def __init__(self, stream: EventStream) -> None:
        self.stream = stream
        self.status: dict[str, Any] = {
            "state": "disconnected", "since": round(time.time()), "queued": None, "dropped": 0,
        }
        self._drop_warned = 0.0

    def reported(self, state: str, queued: int | None, dropped: int | None) -> None:
        """The meta-resource saw the bridge change state, or mosquitto's counters move."""
        status = self.status
        changed = state != status["state"]
        if changed:
            log.log(logging.INFO if state == "connected" else logging.WARNING, "uplink %s", state)
            status.update(state=state, since=round(time.time()))
        if dropped is not None and dropped > (status["dropped"] or 0):
            now = time.monotonic()
            if now - self._drop_warned >= UPLINK_DROP_WARNING_INTERVAL:
                self._drop_warned = now
                log.warning(
                    "uplink: the embedded broker has dropped %d message(s) at its queue bound "
                    "([uplink] max_queued_messages / max_queued_bytes)", dropped,
                )
        status.update(queued=queued, dropped=dropped if dropped is not None else status["dropped"])
        if changed:
            self.stream.publish(UplinkChanged(state, dict(status)))
