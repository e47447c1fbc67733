"""Each part of sgframework on its own, without a broker: what it decides, says and counts.

The parts (sgframework.connection, .outbound, .inbound, .announcements, .tls) are
composed by App and Resource; these tests drive one part's logic directly. What
crosses the network is tested against a real broker in test_framework_*.py and
test_sgframework_modes.py.
"""

from __future__ import annotations

import logging
import os
import signal
import ssl
import threading

import pytest
from paho.mqtt.client import MQTTMessage, MQTTMessageInfo

from sgframework import App, PublishCounters, Resource
from sgframework.connection import _ReadyTracker
from sgframework.outbound import _RateLimitedWarning
from sgframework.tls import describe_tls_alert


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def records() -> Records:
    handler = Records()
    logger = logging.getLogger("sgframework")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


# ------------------------------------------------------------------ outbound


def test_a_rate_limited_warning_logs_the_first_event_then_one_summary(records: Records) -> None:
    warning = _RateLimitedWarning("Refused", interval=3600)
    logger = logging.getLogger("sgframework.parts")
    assert warning.due(0.0) is None  # nothing open: an idle callback thread sleeps until an event
    warning.event(logger, "data/x/a", "full")
    warning.event(logger, "data/x/b", "full")
    warning.event(logger, "data/x/c", "still full")
    assert records.messages == ["Refused a message on data/x/a: full"]
    due = warning.due(warning._window_start or 0.0)
    assert due is not None and due == pytest.approx(3600)
    warning.interval = 0  # the interval is over: the next flush writes the summary
    warning.flush(logger)
    assert records.messages[1] == "Refused 2 more messages in the last 0 s (the last on data/x/c: still full)"
    warning.flush(logger)  # a quiet interval closes the window: nothing more, and nothing due
    assert len(records.messages) == 2 and warning.due(0.0) is None


def test_publish_counters_are_an_immutable_snapshot_compared_by_value() -> None:
    counters = PublishCounters(published=3, acknowledged=2)
    assert counters == PublishCounters(3, 2, 0, 0, 0, 0) and counters != PublishCounters(3)
    assert repr(counters) == (
        "PublishCounters(published=3, acknowledged=2, refused=0, dropped=0, queued=0, queued_bytes=0)"
    )
    with pytest.raises(AttributeError, match="snapshot"):
        counters.published = 4  # type: ignore[misc]


def test_the_queue_bounds_name_what_is_full() -> None:
    app = App("bounds", "127.0.0.1", 1)
    app.max_queued_messages = 2
    app.max_queued_bytes = 100
    assert app._queue_full_for(10) is None
    app._outstanding.append((MQTTMessageInfo(1), 10))
    app._outstanding_bytes = 95
    assert "95 bytes already wait" in str(app._queue_full_for(10)) and "max_queued_bytes = 100" in str(
        app._queue_full_for(10)
    )
    app._outstanding.append((MQTTMessageInfo(2), 10))
    assert "2 messages already wait" in str(app._queue_full_for(1))
    app.max_queued_messages = 0
    with pytest.raises(ValueError, match="max_queued_messages must be a whole number from 1"):
        app._check_bounds()


def test_acknowledged_messages_free_room_and_are_counted_oldest_first() -> None:
    app = App("acks", "127.0.0.1", 1)
    first, second, third = MQTTMessageInfo(7), MQTTMessageInfo(8), MQTTMessageInfo(9)
    app._outstanding.extend([(first, 30), (second, 20), (third, 10)])
    app._outstanding_bytes = 60
    first._set_as_published()  # what paho does at the PUBACK, on its network thread
    third._set_as_published()  # acknowledged before an older one: counted with it
    assert app.counters == PublishCounters(acknowledged=1, queued=2, queued_bytes=30)
    second._set_as_published()
    assert app.counters == PublishCounters(acknowledged=3)


# ------------------------------------------------------------------ connection


def test_the_ready_tracker_completes_when_everything_expected_is_acknowledged() -> None:
    tracker = _ReadyTracker()
    tracker.begin()
    tracker.expect(1)
    tracker.expect(2)
    assert not tracker.done(1)  # still collecting what to expect
    assert not tracker.finish()  # 2 is outstanding
    assert tracker.done(2) and tracker.ready.is_set()
    assert not tracker.done(2)  # completes once
    tracker.reset()
    assert not tracker.ready.is_set()
    tracker.begin()
    assert tracker.finish()  # nothing to wait for: ready at once


def test_a_tls_alert_is_told_in_words_and_other_errors_are_not_alerts() -> None:
    error = ssl.SSLError(1, "alert")
    error.reason = "TLSV1_ALERT_UNKNOWN_CA"  # type: ignore[misc]
    assert describe_tls_alert(error) == (
        "TLSV1_ALERT_UNKNOWN_CA (it does not trust the CA that signed this client's certificate)"
    )
    other = ssl.SSLError(1, "other")
    other.reason = "WRONG_VERSION_NUMBER"  # type: ignore[misc]
    assert describe_tls_alert(other) is None
    assert describe_tls_alert(OSError("refused")) is None


def test_a_connection_failure_hint_names_what_to_check() -> None:
    app = App("hints", "127.0.0.1", 1)
    app._remember_connect_failure("the broker refused the connection: Not authorized")
    assert app.last_connection_error is not None and "check username and password" in app.last_connection_error
    assert app._ready.settled.is_set()  # a threaded start() stops waiting


# ------------------------------------------------------------------ inbound


def message(topic: str, payload: bytes) -> MQTTMessage:
    made = MQTTMessage(topic=topic.encode())
    made.payload = payload
    return made


def test_dispatch_strips_filters_on_change_and_survives_bad_messages(records: Records) -> None:
    calls: list[tuple[str, str, str, str]] = []
    app = App("inbound", "127.0.0.1", 1)
    app.register_incoming_data("res", "level", lambda a, *args: calls.append(args), callback_on_change_only=True)
    for topic, payload in (
        ("data/res/level", b" 1 "),
        ("data/res/level", b"1"),  # unchanged: no call
        ("data/res/level", b"\xff"),  # not UTF-8: dropped with a warning
        ("data/res/level/extra", b"2"),  # four levels: ignored with a warning
        ("data/res/other", b"3"),  # not registered: ignored
        ("data/res/level", b"2"),
    ):
        app._handle_message(message(topic, payload))
    assert calls == [("data", "res", "level", "1"), ("data", "res", "level", "2")]
    assert any("not valid UTF-8" in line for line in records.messages)
    assert any("exactly three levels" in line for line in records.messages)


def test_a_callback_that_raises_is_logged_and_the_next_message_is_handled(records: Records) -> None:
    calls: list[str] = []

    def callback(app: App, messagetype: str, servicename: str, signalname: str, payload: str) -> None:
        if payload == "bad":
            raise RuntimeError("refuses bad")
        calls.append(payload)

    app = App("raising", "127.0.0.1", 1)
    app.register_incoming_data("res", "x", callback)
    app._handle_message(message("data/res/x", b"bad"))
    app._handle_message(message("data/res/x", b"good"))
    assert calls == ["good"]
    assert any("The callback for 'data/res/x' raised" in line for line in records.messages)


def test_wake_callbacks_makes_a_waiting_run_callbacks_return() -> None:
    app = App("waker", "127.0.0.1", 1)
    waker = threading.Thread(target=app.wake_callbacks)
    waker.start()
    app.run_callbacks(600)  # returns when woken (or at once, if the wake came first): never after 600 s
    waker.join()


def test_wake_callbacks_is_safe_in_a_signal_handler() -> None:
    app = App("signalled", "127.0.0.1", 1)
    previous = signal.signal(signal.SIGUSR1, lambda number, frame: app.wake_callbacks())
    try:
        sender = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGUSR1))
        sender.start()
        app.run_callbacks(600)  # the handler runs on this (the main) thread while it waits
        sender.join()
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_a_wake_is_not_a_callback_and_the_messages_after_it_are_delivered() -> None:
    calls: list[str] = []
    app = App("ordered", "127.0.0.1", 1)
    app.register_incoming_data("res", "x", lambda a, m, s, n, payload: calls.append(payload))
    app.wake_callbacks()
    app._on_message(None, None, message("data/res/x", b"1"))  # type: ignore[arg-type]
    app.run_callbacks(0)  # the wake: returns without running anything
    assert calls == []
    app.run_callbacks(0)
    assert calls == ["1"]


# ------------------------------------------------------------------ announcements


def test_announcements_defaults_and_retained_values_of_a_resource() -> None:
    resource = Resource("ann", "127.0.0.1", 1)
    resource.register_incoming_command("mode", lambda *args: None, defaultvalue="auto")
    resource.register_incoming_command("raw", lambda *args: None, echo=False)
    resource.register_outgoing_data("level", defaultvalue=3, send_data_as_retained=True)
    resource.register_outgoing_data("last", send_data_as_retained=True)
    assert resource.announced_topics == [
        "commandavailable/ann/mode",
        "commandavailable/ann/raw",
        "dataavailable/ann/mode",
        "dataavailable/ann/level",
        "dataavailable/ann/last",
    ]
    assert resource._defaults() == [("data/ann/mode", "auto", False), ("data/ann/level", "3", True)]
    assert resource._retained_values() == []
    resource._outputs["last"].last_retained = "9"
    assert resource._retained_values() == [("data/ann/last", "9", True)]
    resource.unregister_outgoing_data("last")
    assert "dataavailable/ann/last" not in resource.announced_topics
    assert resource.republish() == 0  # not connected: nothing sent
