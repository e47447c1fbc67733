"""What the dashboard's process knows of the host, and the pages that follow it.

Two threads feed it: one samples ``status`` every :data:`history.SAMPLE_INTERVAL`
seconds (into the history, and to every page), the other follows the host's
events (a state change reaches every open page at once). Each page that
follows ``/api/events`` is a :class:`Subscriber` with a bounded queue; one that
does not keep up is disconnected (its browser reconnects and starts afresh),
so a slow browser holds nothing but its own slot.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any

from sghost.dashboard.history import SAMPLE_INTERVAL, History
from sghost.dashboard.link import ControlLink
from sghost.dashboard.liveness import Turning
from sghost.process.controlwire import ControlError

MAX_SUBSCRIBERS = 16
MAX_QUEUED = 256
"""Messages waiting for one page before it is disconnected."""
RECONNECT_DELAY = 1.0
STATUS_MAX_AGE = 1.0
"""``/api/status`` asks the host at most once a second; within that it answers from the last document."""
PROCESSES = "processes"

log = logging.getLogger("sghost.dashboard")


def sse(event: str, data: Any) -> bytes:
    """One server-sent event (JSON data on one line)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


class Subscriber:
    """One open page's queue of encoded events."""

    def __init__(self) -> None:
        self.queue: queue.Queue[bytes] = queue.Queue(MAX_QUEUED)
        self.dropped = False

    def put(self, message: bytes) -> None:
        try:
            self.queue.put_nowait(message)
        except queue.Full:
            self.dropped = True

    def get(self, timeout: float) -> bytes | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None


class Hub:
    """The host's last status, the history, and the open pages."""

    def __init__(self, link: ControlLink, sample_interval: float = SAMPLE_INTERVAL) -> None:
        self.link = link
        self.sample_interval = sample_interval
        self.history = History()
        self.lock = threading.Lock()
        self.status: dict[str, Any] | None = None
        self.status_at = 0.0
        self.error: str | None = None
        self.points: dict[str, list[float]] = {}
        self.points_at = 0.0
        self.subscribers: set[Subscriber] = set()
        self._fetch_lock = threading.Lock()
        self._stop = threading.Event()
        self._sample_failure = ""
        self.sampler_turning = Turning(sample_interval)
        """The sampler's progress, for the process's heartbeat (sghost.dashboard.liveness)."""

    def start(self) -> None:
        threading.Thread(target=self._sample_forever, name="sampler", daemon=True).start()
        threading.Thread(target=self._follow_events, name="events", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------ status

    def fetch_status(self) -> dict[str, Any]:
        """The host's status document; raises ControlError when the host does not answer."""
        answer = self.link.request({"op": "status"})
        status = answer.get("status")
        if not answer.get("ok") or not isinstance(status, dict):
            raise ControlError(str(answer.get("message") or answer.get("error") or "no status in the answer"))
        return status

    def current_status(self) -> dict[str, Any]:
        """The status document (``sghost status --json``), asked of the host at most once a second."""
        with self._fetch_lock:
            with self.lock:
                if self.status is not None and time.monotonic() - self.status_at < STATUS_MAX_AGE:
                    return self.status
            status = self.fetch_status()
            with self.lock:
                self.status, self.status_at = status, time.monotonic()
            return status

    def sample(self) -> None:
        """Ask the host for its status, record it in the history, and tell every page."""
        try:
            status = self.fetch_status()
        except ControlError as error:
            self._unreachable(str(error))
            return
        at = time.time()
        with self.lock:
            self.status, self.status_at, self.error = status, time.monotonic(), None
            self.points, self.points_at = self.history.add(status, at), at
            message = sse("status", self._page_status())
            self._broadcast(message)

    def _page_status(self) -> dict[str, Any]:
        """What the page gets: the status without per-process counters, and the newest sample point."""
        assert self.status is not None
        status = {key: value for key, value in self.status.items() if key != PROCESSES}
        return {"status": status, "sample": {"t": round(self.points_at, 1), "points": self.points}, "error": self.error}

    def _unreachable(self, error: str) -> None:
        with self.lock:
            if error != self.error:
                log.warning("the host's control socket does not answer: %s", error)
            self.error = error
            self._broadcast(sse("unreachable", {"error": error}))

    def _sample_forever(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.sample()
            except Exception as error:  # a surprise in one document must not end the sampling
                if repr(error) != self._sample_failure:  # logged once, not every 5 s
                    log.exception("sampling the host's status failed")
                self._sample_failure = repr(error)
            self.sampler_turning.turned()
            self._stop.wait(max(0.0, self.sample_interval - (time.monotonic() - started)))

    # ------------------------------------------------------------ events

    def _follow_events(self) -> None:
        while not self._stop.is_set():
            try:
                stream = self.link.follow({"op": "events"})
            except ControlError as error:
                self._unreachable(str(error))
                self._stop.wait(RECONNECT_DELAY)
                continue
            try:
                if not stream.first.get("ok"):
                    log.warning("the host refused to stream its events: %s", stream.first.get("message"))
                    self._stop.wait(RECONNECT_DELAY * 10)
                    continue
                self.sample()  # what changed before the stream began
                for event in stream.messages():
                    self.apply(event)
            except (ControlError, OSError):
                pass
            except Exception:  # a surprise in one event must not end the following
                log.exception("following the host's events failed")
            finally:
                stream.close()
            self._stop.wait(RECONNECT_DELAY)

    def apply(self, event: dict[str, Any]) -> None:
        """One host event: update the status document and tell every page."""
        if event.get("event") == "host":  # uplink, broker node, deployment, resources added or removed
            self.sample()
            return
        if event.get("event") != "state" or not isinstance(event.get("values"), dict):
            return
        name, values = str(event.get("resource")), event["values"]
        with self.lock:
            if self.status is not None:
                # a new document, not a changed one: request threads may be encoding the old one
                resources = self.status.get("resources") or {}
                changed = {**resources, name: {**resources.get(name, {}), **values}}
                self.status = {**self.status, "resources": changed}
            self._broadcast(sse("state", {"resource": name, "values": values, "at": event.get("at")}))

    # ------------------------------------------------------------ pages

    def subscribe(self) -> tuple[Subscriber, bytes] | None:
        """A new page: its queue, and the first message (the whole status), or None when too many follow."""
        subscriber = Subscriber()
        with self.lock:
            if len(self.subscribers) >= MAX_SUBSCRIBERS:
                return None
            self.subscribers.add(subscriber)
            first = sse("status", self._page_status()) if self.status is not None else b""
        return subscriber, first

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self.lock:
            self.subscribers.discard(subscriber)

    def _broadcast(self, message: bytes) -> None:
        for subscriber in self.subscribers:
            subscriber.put(message)
