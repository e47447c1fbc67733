"""The dashboard's parts that need no process: history rings, the checks, the followers' bounds."""

from __future__ import annotations

import json
import logging
import select
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hostharness import wait_until
from sghost.config.dashboard import DashboardConfig
from sghost.dashboard.history import CAPACITY, History, Ring
from sghost.dashboard.hub import MAX_QUEUED, Hub, Subscriber
from sghost.dashboard.link import ControlLink
from sghost.dashboard.liveness import Turning, beat
from sghost.dashboard.security import MAX_FAILURES, MAX_SESSIONS, Guard, host_name
from sghost.host import dashboardprocess, eventfollowers
from sghost.host.control import FOLLOW, ControlServer, make_handler
from sghost.host.dashboardprocess import DashboardProcess
from sghost.host.eventfollowers import EventFollowers
from sghost.process import events

# ---------------------------------------------------------------- history


def test_a_ring_keeps_its_capacity_oldest_first() -> None:
    ring = Ring(capacity=4)
    for second in range(7):
        ring.append(float(second), float(second), 10.0 + second, second)
    assert ring.as_dict() == {
        "t": [3.0, 4.0, 5.0, 6.0], "cpu": [3.0, 4.0, 5.0, 6.0], "memory": [13.0, 14.0, 15.0, 16.0],
        "restarts": [3, 4, 5, 6],
    }


def test_the_history_holds_one_hour_per_resource_whatever_runs() -> None:
    history = History()
    for sample in range(CAPACITY + 50):
        history.add({"resources": {"a": {"restarts": 0, "cpu": 0.0}}}, float(sample))
    assert history.rings["a"].count == CAPACITY
    assert len(history.of("a")["t"]) == CAPACITY  # type: ignore[index]


def test_cpu_is_worked_out_from_cpu_seconds_between_two_samples() -> None:
    history = History()
    figures = {"cpu_seconds": 1.0, "memory_bytes": 20 * 1048576, "start_time": 100.0}
    first = history.add({"resources": {"a": {"restarts": 2, "cpu": 7.0}}, "processes": {"a": figures}}, 10.0)
    assert first == {"a": [7.0, 20.0, 2]}, "a new process: the host's own figure"
    later = {**figures, "cpu_seconds": 2.0}
    assert history.add({"resources": {"a": {"restarts": 2}}, "processes": {"a": later}}, 15.0) == {"a": [20.0, 20.0, 2]}
    restarted = {**later, "start_time": 200.0}
    assert history.add({"resources": {"a": {"restarts": 3, "cpu": 1.5}}, "processes": {"a": restarted}}, 20.0)[
        "a"
    ] == [1.5, 20.0, 3]


def test_a_resource_that_left_the_manifest_leaves_the_history() -> None:
    history = History()
    history.add({"resources": {"a": {}, "b": {}}}, 1.0)
    history.add({"resources": {"a": {}}}, 2.0)
    assert set(history.rings) == {"a"} and history.of("b") is None


# ---------------------------------------------------------------- Host, Origin, tokens


@pytest.mark.parametrize(
    ("header", "name"),
    [("127.0.0.1:9443", "127.0.0.1"), ("[::1]:9443", "::1"), ("Gateway.Local", "gateway.local"), ("::1", "::1")],
)
def test_the_name_in_a_host_header(header: str, name: str) -> None:
    assert host_name(header) == name


def test_on_loopback_only_loopback_names_and_hosts_are_allowed() -> None:
    guard = Guard(DashboardConfig(listen=("127.0.0.1", 9), hosts=("gw.local",)), None, tls=False)
    for allowed in ("127.0.0.1:9", "localhost:9", "[::1]:9", "GW.local:9"):
        assert guard.host_allowed(allowed), allowed
    for refused in ("evil.example", "127.0.0.1.evil.example", "", None, "10.1.2.3"):
        assert not guard.host_allowed(refused), refused


def test_on_a_specific_address_that_address_and_hosts_are_allowed(tmp_path: Path) -> None:
    guard = Guard(DashboardConfig(listen=("192.0.2.7", 9), hosts=("gw.local",)), "t" * 20, tls=True)
    assert guard.host_allowed("192.0.2.7:9") and guard.host_allowed("gw.local")
    assert not guard.host_allowed("localhost:9") and not guard.host_allowed("evil.example")


def test_on_every_address_this_machines_addresses_are_allowed() -> None:
    guard = Guard(DashboardConfig(listen=("0.0.0.0", 9)), "t" * 20, tls=False)
    assert guard.host_allowed("127.0.0.1:9")
    assert not guard.host_allowed("198.51.100.200:9"), "not an address of this machine"


def test_origin_rules() -> None:
    guard = Guard(DashboardConfig(listen=("127.0.0.1", 9)), "t" * 20, tls=False)
    own = {"Host": "127.0.0.1:9", "Origin": "http://127.0.0.1:9"}
    assert guard.origin_allowed(own, bearer=False)
    assert not guard.origin_allowed({**own, "Origin": "http://evil.example"}, bearer=True)
    assert not guard.origin_allowed({**own, "Origin": "https://127.0.0.1:9"}, bearer=True), "another scheme"
    assert not guard.origin_allowed({**own, "Sec-Fetch-Site": "cross-site"}, bearer=True)
    assert guard.origin_allowed({"Host": "127.0.0.1:9"}, bearer=True), "a script"
    assert not guard.origin_allowed({"Host": "127.0.0.1:9"}, bearer=False), "a cookie without Origin"
    open_guard = Guard(DashboardConfig(listen=("127.0.0.1", 9)), None, tls=False)
    assert open_guard.origin_allowed({"Host": "127.0.0.1:9"}, bearer=False), "no token: a local script"


def test_wrong_tokens_are_counted_and_then_refused_for_a_minute() -> None:
    guard = Guard(DashboardConfig(), "the-right-token-1234", tls=False)
    assert guard.token_matches("the-right-token-1234")
    for _ in range(MAX_FAILURES):
        assert not guard.too_many_failures()
        assert not guard.token_matches("wrong")
    assert guard.too_many_failures()
    assert guard.failures_to_report() == MAX_FAILURES
    assert not guard.token_matches("wrong again")
    assert guard.failures_to_report() == 0, "reported at most once a minute"


def test_sessions_are_bounded_and_end() -> None:
    guard = Guard(DashboardConfig(), "the-right-token-1234", tls=False)
    first = guard.new_session()
    assert guard.session_valid(first) and not guard.session_valid("made-up") and not guard.session_valid(None)
    later = [guard.new_session() for _ in range(MAX_SESSIONS)]
    assert not guard.session_valid(first), "the oldest made room"
    guard.end_session(later[-1])
    assert not guard.session_valid(later[-1]) and guard.session_valid(later[0])
    cookie = guard.cookie_header(later[0])
    assert later[0] in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert guard.session_of(f"other=1; {guard.cookie}={later[0]}") == later[0]


# ---------------------------------------------------------------- followers


def test_an_event_follower_that_reads_nothing_is_disconnected_not_waited_for() -> None:
    followers = EventFollowers()
    reader, writer = socket.socketpair()
    with reader:
        assert followers.follow(writer)
        big = "x" * 65536
        for _ in range(eventfollowers.MAX_BACKLOG // 65536 + 64):
            followers.state_changed("a", {"error": big})  # never blocks
        assert not followers._followers, "the follower that fell behind is gone"
        reader.setblocking(False)
        assert reader.recv(64).startswith(b'{"event":"state","resource":"a"'), "what fitted was sent"


def test_at_most_max_followers_follow_the_events() -> None:
    followers = EventFollowers()
    pairs = [socket.socketpair() for _ in range(eventfollowers.MAX_FOLLOWERS + 1)]
    try:
        accepted = [followers.follow(writer) for _reader, writer in pairs]
        assert accepted == [True] * eventfollowers.MAX_FOLLOWERS + [False]
    finally:
        followers.close()
        for reader, writer in pairs:
            reader.close()
            writer.close()


def test_a_page_that_does_not_keep_up_is_dropped() -> None:
    subscriber = Subscriber()
    for _ in range(MAX_QUEUED):
        subscriber.put(b"event")
    assert not subscriber.dropped
    subscriber.put(b"one too many")
    assert subscriber.dropped


class _Host:
    """Just enough of the supervisor for the control socket's handler."""

    def __init__(self, followers: EventFollowers | None) -> None:
        if followers is not None:
            self.follow_events = followers.follow

    def snapshot(self) -> dict[str, object]:
        return {}

    def command(self, op: str, name: str) -> tuple[bool, str]:
        return True, ""

    def reload(self) -> tuple[bool, str]:
        return True, ""


def test_the_events_op_hands_the_connection_to_the_followers() -> None:
    followers = EventFollowers()
    answer = make_handler(_Host(followers))({"op": "events"})
    assert answer["ok"] is True
    reader, writer = socket.socketpair()
    with reader:
        answer[FOLLOW](writer)
        followers.state_changed("climate", {"state": "backoff", "restarts": 1})
        event = json.loads(reader.recv(65536).split(b"\n")[0])
    followers.close()
    assert (event["event"], event["resource"]) == ("state", "climate")
    assert event["values"] == {"state": "backoff", "restarts": 1}



def test_a_status_document_the_hub_cannot_read_does_not_end_the_sampling(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    answers = [{"resources": ["not", "a", "table"]}, {"resources": {"a": {"restarts": 0}}}]
    served: list[str] = []

    def handle(request: dict[str, object]) -> dict[str, object]:
        served.append(str(request["op"]))
        if request["op"] == "events":
            return {"ok": False, "error": "no events here", "message": "no events here"}
        return {"ok": True, "status": answers[0] if len(served) < 3 else answers[1]}

    server = ControlServer(tmp_path / "control.sock", handle)
    server.open()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            if select.select([server], [], [], 0.05)[0]:
                server.handle_ready()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    hub = Hub(ControlLink(str(tmp_path / "control.sock")), sample_interval=0.05)
    try:
        hub.start()
        assert wait_until(lambda: hub.history.of("a") is not None, 10), served
        assert "sampling the host's status failed" in caplog.text
    finally:
        hub.stop()
        stop.set()
        thread.join(5)
        server.close()


# ---------------------------------------------------------------- liveness


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Sent:
    def __init__(self) -> None:
        self.kinds: list[str] = []

    def send(self, kind: str, **fields: object) -> None:
        self.kinds.append(kind)


def test_a_heartbeat_goes_out_only_while_every_thread_turns() -> None:
    clock, channel = Clock(), Sent()
    threads = {"http": Turning(5.0, clock), "sampler": Turning(5.0, clock)}
    assert beat(channel, threads) == [] and channel.kinds == [events.HEARTBEAT]
    clock.now += 12.0  # past twice the period and the slack
    threads["http"].turned()
    assert beat(channel, threads) == ["sampler"]
    assert channel.kinds == [events.HEARTBEAT], "no heartbeat while the sampler is stuck"
    threads["sampler"].turned()
    assert beat(channel, threads) == [] and channel.kinds == [events.HEARTBEAT] * 2


class Timers:
    def __init__(self) -> None:
        self.due: list[Callable[[], Any]] = []

    def call_later(self, delay: float, callback: Callable[[], Any]) -> None:
        self.due.append(callback)

    def run_due(self) -> None:
        due, self.due = self.due, []
        for callback in due:
            callback()


class FakeHost:
    def __init__(self) -> None:
        self.timers = Timers()

    def watch_pipes(self, pipes: object, fds: list[int]) -> None: ...
    def unwatch_pipe(self, fd: int) -> None: ...
    def spawn(self, owner: object, spec: object, fds: list[int]) -> None: ...


def test_the_supervisor_kills_a_dashboard_silent_for_its_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, killed = Clock(), []
    monkeypatch.setattr(dashboardprocess.time, "monotonic", clock)
    monkeypatch.setattr(dashboardprocess, "kill_group", lambda pid, sig: killed.append((pid, sig)))
    host = FakeHost()
    handle = DashboardProcess(host, DashboardConfig(enabled=True, watchdog=2.0), "sock", "gw",  # type: ignore[arg-type]
                              logging.getLogger("test"), lambda: False)
    handle.spawned(4242)
    clock.now += 10.0  # still within the start-up grace before the first heartbeat
    host.timers.run_due()
    handle.event({"kind": events.HEARTBEAT})
    for _ in range(8):
        clock.now += 0.5
        handle.event({"kind": events.HEARTBEAT})
        host.timers.run_due()
    assert killed == [], "a dashboard that beats is left alone"
    clock.now += 2.5
    host.timers.run_due()
    assert killed == [(4242, signal.SIGKILL)]
    assert host.timers.due == [], "one kill, no more checks for that pid"


def test_a_dashboard_that_never_beats_is_killed_after_the_start_up_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, killed = Clock(), []
    monkeypatch.setattr(dashboardprocess.time, "monotonic", clock)
    monkeypatch.setattr(dashboardprocess, "kill_group", lambda pid, sig: killed.append(pid))
    host = FakeHost()
    handle = DashboardProcess(host, DashboardConfig(enabled=True, watchdog=2.0), "sock", "gw",  # type: ignore[arg-type]
                              logging.getLogger("test"), lambda: False)
    handle.spawned(7)
    clock.now += dashboardprocess.STARTUP_GRACE - 1
    host.timers.run_due()
    assert killed == []
    clock.now += 2
    host.timers.run_due()
    assert killed == [7]
