"""The outbound flow: publishing within the bounds, waiting for room, refusals, counters, rate-limited warnings.

A mixin of :class:`sgframework.App`: the state it uses is created by ``App.__init__``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from sgframework import constants

_WAIT_SLICE = 0.05
"""Seconds between checks while a send waits for room (an acknowledgement also wakes it)."""
_ROOM_BATCH = 1000
"""A sender waiting for room is woken after this many acknowledgements (or a tenth of those it waits for)."""


class PublishError(Exception):
    """A QoS >= 1 message that was not accepted for delivery: the queue is full, or paho refused it (an extension).

    ``topic`` is where it was to go, ``reason`` says why (the bound that was reached, and for how long it waited).
    """

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"Not published on {topic}: {reason}")
        self.topic = topic
        self.reason = reason


class PublishCounters:
    """What an App or Resource did with the messages it was asked to send (an extension).

    ``published``: handed to the broker connection (any QoS). ``acknowledged``: QoS >= 1
    messages the broker acknowledged. ``refused``: sends that raised :class:`PublishError`
    (and echoes that could not be queued). ``dropped``: QoS 0 messages that could not be
    sent (no connection), and QoS >= 1 messages still unacknowledged when ``stop()``
    disconnected. ``queued``/``queued_bytes``: QoS >= 1 messages waiting for their
    acknowledgement now.

    An immutable snapshot, compared by value. A plain class rather than a frozen dataclass:
    ``dataclasses`` imports ``inspect`` and ``ast``, about 1.5 MiB in every resource process.
    """

    __slots__ = _COUNTER_FIELDS = ("published", "acknowledged", "refused", "dropped", "queued", "queued_bytes")
    published: int
    acknowledged: int
    refused: int
    dropped: int
    queued: int
    queued_bytes: int

    def __init__(
        self,
        published: int = 0,
        acknowledged: int = 0,
        refused: int = 0,
        dropped: int = 0,
        queued: int = 0,
        queued_bytes: int = 0,
    ) -> None:
        values = (published, acknowledged, refused, dropped, queued, queued_bytes)
        for name, value in zip(self._COUNTER_FIELDS, values, strict=True):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"PublishCounters is a snapshot: {name} cannot be set")

    def _values(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in self._COUNTER_FIELDS)

    def __eq__(self, other: object) -> bool:
        return self._values() == other._values() if isinstance(other, PublishCounters) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._COUNTER_FIELDS)
        return f"PublishCounters({shown})"


class _RateLimitedWarning:
    """Logs the first event of a kind at once, then at most one summary per interval: never a line per message."""

    def __init__(self, what: str, interval: float = constants.WARNING_SUMMARY_INTERVAL) -> None:
        self.what = what
        self.interval = interval
        self._lock = threading.Lock()
        self._window_start: float | None = None
        self._suppressed = 0
        self._last = ""

    def event(self, logger: logging.Logger, topic: str, reason: str) -> None:
        now = time.monotonic()
        with self._lock:
            if self._window_start is None:
                self._window_start = now
                first = True
            else:
                first = False
                self._suppressed += 1
                self._last = f"{topic}: {reason}"
        if first:
            logger.warning("%s a message on %s: %s", self.what, topic, reason)
        else:
            self.flush(logger, now)

    def due(self, now: float) -> float | None:
        """Seconds until the summary of the current interval is due, or None when no interval is open."""
        start = self._window_start
        return None if start is None else max(0.0, start + self.interval - now)

    def flush(self, logger: logging.Logger, now: float | None = None) -> None:
        """Write the summary of a finished interval; after a quiet one, the next event is logged at once."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._window_start is None or now - self._window_start < self.interval:
                return
            suppressed, last, elapsed = self._suppressed, self._last, now - self._window_start
            self._suppressed = 0
            self._window_start = now if suppressed else None
        if suppressed:
            logger.warning(
                "%s %s more messages in the last %.0f s (the last on %s)", self.what, f"{suppressed:,}", elapsed, last
            )


class Outbound:
    """Sends a user's messages: QoS 0 sent or counted as dropped, QoS >= 1 queued within the bounds or refused."""

    def _init_outbound(self) -> None:
        """The outbound flow's own state (called by ``App.__init__``)."""
        self._out_lock = threading.Lock()
        self._outstanding: deque[tuple[mqtt.MQTTMessageInfo, int]] = deque()
        """QoS >= 1 messages sent and not yet acknowledged, oldest first, with their size in bytes."""
        self._outstanding_bytes = 0
        self._published = 0
        self._acknowledged = 0
        self._refused = 0
        self._dropped = 0
        self._drop_warning = _RateLimitedWarning("Dropped")
        self._refusal_warning = _RateLimitedWarning("Refused")

    @property
    def counters(self) -> PublishCounters:
        """What happened to the messages sent so far (an extension): see :class:`PublishCounters`."""
        with self._out_lock:
            self._reap_acknowledgements()
            return PublishCounters(
                published=self._published,
                acknowledged=self._acknowledged,
                refused=self._refused,
                dropped=self._dropped,
                queued=len(self._outstanding),
                queued_bytes=self._outstanding_bytes,
            )

    def _publish(self, topic: str, payload: str, retain: bool = False) -> mqtt.MQTTMessageInfo | None:
        """Publish a user's message: QoS 0 is sent or counted as dropped; QoS >= 1 is queued or refused."""
        client = self.mqttclient
        if client is None:
            raise ValueError(f"{self.name}: start() the {self._KIND.lower()} before publishing")
        qos = self.qos
        if qos > 0:
            return self._publish_reliably(client, topic, payload, qos, retain)
        info = client.publish(topic, payload, qos=0, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            with self._out_lock:
                self._published += 1
            return info
        with self._out_lock:
            self._dropped += 1
        why = "not connected to the broker and qos is 0" if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN else (
            mqtt.error_string(info.rc)
        )
        self._drop_warning.event(self.logger, topic, why)
        return info

    def _publish_reliably(
        self, client: mqtt.Client, topic: str, payload: str, qos: int, retain: bool
    ) -> mqtt.MQTTMessageInfo:
        """Queue a QoS >= 1 message within the bounds, waiting for room while connected; else PublishError."""
        size = len(topic) + (len(payload) if isinstance(payload, bytes) or payload.isascii() else len(payload.encode()))
        outstanding = self._outstanding
        deadline: float | None = None
        while True:
            with self._out_lock:
                self._reap_acknowledgements()  # at every send: an acknowledged message is not kept
                if len(outstanding) < self.max_queued_messages and (
                    not outstanding or self._outstanding_bytes + size <= self.max_queued_bytes
                ):
                    full = None
                    info = client.publish(topic, payload, qos=qos, retain=retain)
                    if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                        outstanding.append((info, size))  # NO_CONN: paho keeps it for the reconnect
                        self._outstanding_bytes += size
                        self._published += 1
                        return info
                else:
                    full = self._queue_full_for(size)
            if full is None:
                raise self._refusal(topic, f"paho refused it ({mqtt.error_string(info.rc)})")
            if not self._connected:
                raise self._refusal(topic, f"{full}, and the client is not connected to the broker")
            if not self._can_wait_for_room():
                raise self._refusal(topic, f"{full}, and this thread runs the network, so it cannot wait for room")
            now = time.monotonic()
            deadline = now + self.publish_timeout if deadline is None else deadline
            if now >= deadline:
                raise self._refusal(
                    topic, f"{full}, and no room was made within publish_timeout = {self.publish_timeout:g} s"
                )
            self._wait_for_room(client, min(deadline - now, _WAIT_SLICE), lambda: self._queue_full_for(size) is None)

    def _queue_full_for(self, size: int) -> str | None:
        """Why one more message of ``size`` bytes does not fit (under _out_lock), or None."""
        waiting = len(self._outstanding)
        if waiting >= self.max_queued_messages:
            return f"{waiting:,} messages already wait for the broker's acknowledgement (max_queued_messages)"
        if waiting and self._outstanding_bytes + size > self.max_queued_bytes:
            return (
                f"{self._outstanding_bytes:,} bytes already wait for the broker's acknowledgement "
                f"(max_queued_bytes = {self.max_queued_bytes:,})"
            )
        return None

    def _reap_acknowledgements(self) -> None:
        """Count the oldest messages that the broker acknowledged, and free their room (under _out_lock).

        paho marks a message's ``MQTTMessageInfo`` published at its acknowledgement; the broker
        acknowledges in order, so only the oldest are looked at. This replaced an ``on_publish``
        callback per acknowledgement on paho's thread (bench/framework.py (a), QoS 1). A message
        acknowledged before an older one is counted with it.
        """
        outstanding = self._outstanding
        while outstanding and outstanding[0][0]._published:  # is_published() takes a lock and raises for NO_CONN
            self._outstanding_bytes -= outstanding.popleft()[1]
            self._acknowledged += 1

    def _can_wait_for_room(self) -> bool:
        if self._use_threaded_networking:
            # Our callbacks run after the network step (on paho's thread while the relief thread
            # pumps, or in run_callbacks()); only code that paho itself calls, e.g. a callback
            # added with message_callback_add, runs inside it, where no acknowledgement can arrive.
            return getattr(self.mqttclient, "stepping_thread", None) != threading.get_ident()
        return not (self._pumps_network() and self._in_network_loop)

    def _pumps_network(self) -> bool:
        """Loop mode: whether this thread may run paho's loop itself (the one that calls loop(), or any before)."""
        return not self._use_threaded_networking and self._loop_thread in (None, threading.get_ident())

    def _wait_for_room(self, client: mqtt.Client, timeout: float, done: Callable[[], bool]) -> None:
        """Wait for acknowledgements until ``done()`` (checked under _out_lock), at most ``timeout``:
        woken by the thread that runs the network, or in loop mode, on the thread that calls
        loop(), by driving the network itself."""
        if not self._pumps_network():
            with self._out_lock:
                self._reap_acknowledgements()
                if done():
                    return
                # Wake after a batch of acknowledgements, not after each: one wake-up per
                # message would cost more than the send itself (docs/benchmarks.md).
                waiting = len(self._outstanding)
                info = self._outstanding[min(waiting, _ROOM_BATCH, max(1, waiting // 10)) - 1][0]
            with info._condition:  # notified by paho at the acknowledgement (_set_as_published)
                info._condition.wait_for(lambda: info._published, timeout)
        else:
            self._run_network_loop(client, timeout)

    def _wait_until(self, client: mqtt.Client, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._connected and time.monotonic() < deadline:
            with self._out_lock:
                self._reap_acknowledgements()
                if done():
                    return
            if not self._can_wait_for_room():
                return
            self._wait_for_room(client, min(deadline - time.monotonic(), _WAIT_SLICE), done)

    def _forget_unacknowledged(self) -> None:
        """At stop(): what the broker never acknowledged is lost; count it and say so."""
        with self._out_lock:
            self._reap_acknowledgements()
            lost = len(self._outstanding)
            self._dropped += lost
            self._outstanding.clear()
            self._outstanding_bytes = 0
        if lost:
            self.logger.warning("%d QoS >= 1 message(s) were not acknowledged by the broker before stop(): lost", lost)

    def _refusal(self, topic: str, reason: str) -> PublishError:
        with self._out_lock:
            self._refused += 1
        self._refusal_warning.event(self.logger, topic, reason)
        return PublishError(topic, reason)

    def _warnings_due(self) -> float | None:
        """Seconds until a rate-limited warning's summary is due, or None when none is."""
        now = time.monotonic()
        due = [d for d in (self._drop_warning.due(now), self._refusal_warning.due(now)) if d is not None]
        return min(due) + 0.01 if due else None

    def _flush_warnings(self) -> None:
        now = time.monotonic()
        self._drop_warning.flush(self.logger, now)
        self._refusal_warning.flush(self.logger, now)

    def _check_bounds(self) -> None:
        limit = constants.MAX_QUEUED_MESSAGES_LIMIT
        if not isinstance(self.max_queued_messages, int) or not 1 <= self.max_queued_messages <= limit:
            raise ValueError(
                f"max_queued_messages must be a whole number from 1 to {limit:,} (paho's message ids run out at "
                f"65,535), not {self.max_queued_messages!r}"
            )
        if not isinstance(self.max_queued_bytes, int) or self.max_queued_bytes < 1:
            raise ValueError(f"max_queued_bytes must be a positive whole number, not {self.max_queued_bytes!r}")
        if not isinstance(self.publish_timeout, int | float) or self.publish_timeout < 0:
            raise ValueError(f"publish_timeout must be a number of seconds >= 0, not {self.publish_timeout!r}")
