"""The meta-resource's side of the uplink: the bridge's local notification and $SYS counters, made health.

mosquitto publishes ``1``/``0`` on the bridge's notification topic, which stays
on the embedded broker. The meta-resource turns it into its ordinary data
topic ``data/<host>/uplink`` (``connected`` / ``disconnected``, retained), which
also goes out through the uplink, and tells the supervisor the state with the
queued and dropped counts read from ``$SYS``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

UPLINK_SIGNAL = "uplink"
CONNECTED = "connected"
DISCONNECTED = "disconnected"
STORE_COUNT, RETAINED_COUNT, DROPPED = (
    "$SYS/broker/store/messages/count",
    "$SYS/broker/retained messages/count",
    "$SYS/broker/publish/messages/dropped",
)
log = logging.getLogger("sghost.metaresource")


class UplinkWatch:
    """Follows the bridge on the embedded broker through the meta-resource's MQTT client.

    :param publish: ``publish(signal, text)`` sends a data value of the meta-resource.
    :param report: ``report(state, queued, dropped)`` tells the supervisor.
    """

    def __init__(self, topics: tuple[str, ...], publish: Callable[[str, str], None],
                 report: Callable[[str, int | None, int | None], None]) -> None:
        self.state_topic, *self.counter_topics = topics
        self.publish = publish
        self.report = report
        self.state = DISCONNECTED
        self._published: str | None = None
        self._counters: dict[str, int] = {}
        self._reported: tuple[str, int | None, int | None] | None = None

    def attach(self, client: Any) -> None:
        """Route the bridge's topics to this object, before subscribing (the state is retained)."""
        for topic in (self.state_topic, *self.counter_topics):
            client.message_callback_add(topic, self._on_message)

    def subscribe(self, client: Any) -> None:
        """Subscribe (again) after every connection to the embedded broker."""
        client.subscribe([(topic, 0) for topic in (self.state_topic, *self.counter_topics)])

    def poll(self) -> None:
        """Publish and report what changed; called from the meta-resource's main loop, not paho's thread."""
        state = self.state
        if state != self._published:
            self._published = state
            self.publish(UPLINK_SIGNAL, state)
        current = (state, self.queued, self._counters.get(DROPPED))
        if current != self._reported:
            self._reported = current
            self.report(*current)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            text = message.payload.decode("ascii", errors="replace").strip()
            if message.topic == self.state_topic:
                self.state = CONNECTED if text == "1" else DISCONNECTED
            elif text.isdigit():
                self._counters[message.topic] = int(text)
        except Exception:
            log.exception("uplink status message on %s not understood", message.topic)

    @property
    def queued(self) -> int | None:
        """Messages held by the broker beyond its retained ones: what waits for the uplink (an estimate)."""
        if STORE_COUNT not in self._counters or RETAINED_COUNT not in self._counters:
            return None
        return max(0, self._counters[STORE_COUNT] - self._counters[RETAINED_COUNT])
