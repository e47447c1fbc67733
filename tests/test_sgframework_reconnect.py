"""sgframework.reconnect.ReconnectPolicy: which address next, how long to wait, how long a CONNECT may go unanswered.

A pure policy, so these tests drive it with a clock of their own; no broker is involved
(tests/test_sgframework_failover.py runs it against a real nats-server cluster).
"""

from __future__ import annotations

import pytest

from sgframework.constants import RECONNECT_DELAY_MAX, RECONNECT_DELAY_MIN
from sgframework.reconnect import CONNACK_WAIT, FAST_ROUND_INTERVAL, FIRST_ROUND_INTERVAL, ReconnectPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail_round(policy: ReconnectPolicy, clock: Clock, per_attempt: float = 0.0) -> list[float]:
    """One failure per address; each attempt takes ``per_attempt`` seconds after the wait it was given."""
    delays = []
    for _ in range(policy.address_count):
        delay = policy.failed()
        delays.append(delay)
        clock.now += delay + per_attempt
    return delays


def test_one_address_keeps_the_specified_backoff() -> None:
    clock = Clock()
    policy = ReconnectPolicy(1, clock=clock)
    delays = [policy.failed() for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.index == 0
    assert policy.connack_wait() is None, "one address: paho's keepalive limit, as before"
    policy.connected(0.01)
    assert policy.failed() == RECONNECT_DELAY_MIN
    assert policy.connack_wait() is None


def test_several_addresses_go_round_the_list_at_once_then_pause() -> None:
    clock = Clock()
    policy = ReconnectPolicy(3, clock=clock)
    assert (policy.failed(), policy.index) == (0.0, 1)
    assert (policy.failed(), policy.index) == (0.0, 2)
    third = policy.failed()
    assert policy.index == 0
    assert third == pytest.approx(FIRST_ROUND_INTERVAL), "the first pause comes after a full round, and is short"


def test_the_pause_between_rounds_doubles_to_a_low_cap_while_the_outage_is_young() -> None:
    clock = Clock()
    policy = ReconnectPolicy(3, clock=clock)
    pauses = [fail_round(policy, clock)[-1] for _ in range(6)]
    assert pauses == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, 0.5])
    assert max(pauses) <= FAST_ROUND_INTERVAL


def test_a_round_spent_waiting_needs_no_further_pause() -> None:
    clock = Clock()
    policy = ReconnectPolicy(3, clock=clock)
    for _ in range(4):
        delays = fail_round(policy, clock, per_attempt=0.4)  # nodes that hold the CONNECT
    assert delays == [0.0, 0.0, 0.0], "rounds of 1.2 s already space the attempts out"


def test_nodes_that_refuse_at_once_are_tried_at_most_every_fast_interval() -> None:
    clock = Clock()
    policy = ReconnectPolicy(3, clock=clock)
    started = clock.now
    rounds = 0
    while clock.now - started < 20:
        fail_round(policy, clock)
        rounds += 1
    assert rounds <= 20 / FAST_ROUND_INTERVAL + 4, "a node that is down is not hammered"


def test_a_long_outage_backs_off_to_the_specified_maximum() -> None:
    clock = Clock()
    policy = ReconnectPolicy(2, clock=clock, patience=30.0)
    policy.connected(0.01)
    while clock.now - 1000.0 < 40:
        pause = fail_round(policy, clock)[-1]
    for _ in range(5):
        pause = fail_round(policy, clock)[-1]
    assert pause == pytest.approx(RECONNECT_DELAY_MAX)


def test_a_connection_resets_the_backoff_and_keeps_the_address() -> None:
    clock = Clock()
    policy = ReconnectPolicy(3, clock=clock)
    for _ in range(5):
        fail_round(policy, clock)
    policy.failed()
    assert policy.index == 1
    policy.connected(0.01)
    assert policy.index == 1, "the address connected to stays the current one"
    assert (policy.failed(), policy.index) == (0.0, 2)
    assert (policy.failed(), policy.index) == (0.0, 0)
    assert policy.failed() == pytest.approx(FIRST_ROUND_INTERVAL)


def test_an_unanswered_connect_is_given_up_quickly_once_the_link_is_known() -> None:
    clock = Clock()
    policy = ReconnectPolicy(3, keepalive=10.0, clock=clock)
    assert policy.connack_wait() is None, "before any CONNACK, the link's speed is unknown: keepalive"
    policy.connected(0.01)
    assert policy.connack_wait() == CONNACK_WAIT
    policy.connected(0.5)
    assert policy.connack_wait() == pytest.approx(2.0), "a slow link is given 4 times its slowest CONNACK"


def test_the_connack_wait_grows_to_keepalive_in_a_long_outage() -> None:
    clock = Clock()
    policy = ReconnectPolicy(3, keepalive=10.0, clock=clock, patience=30.0)
    policy.connected(0.01)
    waits = []
    while clock.now - 1000.0 < 60:
        fail_round(policy, clock, per_attempt=policy.connack_wait() or 0)
        waits.append(policy.connack_wait())
    assert waits[0] == CONNACK_WAIT
    assert waits[-1] == 10.0, "a link that became slow is given up to keepalive after the patience"


def test_start_forgets_an_outage() -> None:
    clock = Clock()
    policy = ReconnectPolicy(2, clock=clock)
    for _ in range(5):
        fail_round(policy, clock)
    policy.start()
    policy.failed()
    assert policy.failed() == pytest.approx(FIRST_ROUND_INTERVAL)


def test_no_address_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one address"):
        ReconnectPolicy(0)
