"""When and where to reconnect: the failover policy across broker addresses (an extension).

A pure policy, without sockets or threads: :class:`App` tells it of every attempt's outcome and it
says which address to try next, how long to wait before that, and how long to wait for a CONNACK.

With one address nothing changes from the specified behaviour: a backoff of 0.5 s doubling to 5 s,
reset by a successful connection, and paho's own ``keepalive`` limit on an unanswered CONNECT.

With several addresses the aim is to be connected again within about a second of the moment
any node accepts connections (a JetStream cluster refuses them for seconds while it elects a
new leader), without hammering nodes that are down:

- after a failure the next address is tried **at once**, until every address has failed once
  (a round);
- a new round starts at most every ``round_interval`` seconds, counted from the start of the
  previous round: 0.1 s after the first round, doubling to ``fast_round_interval`` (0.5 s). A
  round spent waiting on nodes that held the CONNECT needs no further pause;
- once connected at least once, a CONNECT left unanswered is given up after
  ``connack_wait`` seconds (0.5 s, or 4 times the slowest CONNACK seen, if longer), so that a node
  that holds connections while it recovers does not hold the client too;
- after ``patience`` seconds (30 s) without a connection the outage is a long one: the pause
  between rounds doubles up to ``max_delay`` (5 s) and the CONNACK wait doubles up to
  ``keepalive``, as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sgframework.constants import RECONNECT_DELAY_MAX, RECONNECT_DELAY_MIN

FIRST_ROUND_INTERVAL = 0.1
FAST_ROUND_INTERVAL = 0.5
CONNACK_WAIT = 0.5
CONNACK_WAIT_PER_LATENCY = 4.0
PATIENCE = 30.0


class ReconnectPolicy:
    """Which broker address to try next and how long to wait; told of every attempt's outcome.

    ``failed()`` after every failed or lost connection returns the seconds to wait before the
    next attempt, on ``index``; ``connected(latency)`` after a CONNACK accepting the connection;
    ``connack_wait()`` is how long the attempt under way may wait for its CONNACK (``None``:
    paho's ``keepalive`` limit).
    """

    def __init__(
        self,
        address_count: int,
        keepalive: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        patience: float = PATIENCE,
    ) -> None:
        if address_count < 1:
            raise ValueError("ReconnectPolicy needs at least one address")
        self.address_count = address_count
        self.keepalive = keepalive
        self.patience = patience
        self._clock = clock
        self.index = 0
        """The address connected to, or tried next (an index into the list of addresses)."""
        self._single_delay = RECONNECT_DELAY_MIN
        self._failed_in_round = 0
        self._round_started: float | None = None
        self._round_interval = FIRST_ROUND_INTERVAL
        self._outage_started: float | None = None
        self._ever_connected = False
        self._slowest_connack = 0.0
        self._long_connack_wait = CONNACK_WAIT

    @property
    def several(self) -> bool:
        return self.address_count > 1

    def start(self) -> None:
        """A new start of the client: no backoff, no outage under way (the address stays)."""
        self._reset()

    def connected(self, connack_latency: float = 0.0) -> None:
        """A CONNACK accepted the connection, ``connack_latency`` seconds after the CONNECT was sent."""
        self._ever_connected = True
        self._slowest_connack = max(self._slowest_connack, connack_latency)
        self._reset()

    def failed(self) -> float:
        """An attempt failed or a connection was lost: move on, and return the seconds to wait first."""
        now = self._clock()
        if self._outage_started is None:
            self._outage_started = now
        if not self.several:
            delay = self._single_delay
            self._single_delay = min(self._single_delay * 2, RECONNECT_DELAY_MAX)
            return delay
        if self._round_started is None:
            self._round_started = now
        self.index = (self.index + 1) % self.address_count
        self._failed_in_round += 1
        if self._failed_in_round < self.address_count:
            return 0.0
        return self._end_round(now)

    def connack_wait(self) -> float | None:
        """Seconds the attempt under way may wait for its CONNACK; ``None``: up to ``keepalive``."""
        if not self.several or not self._ever_connected:
            return None
        learned = max(CONNACK_WAIT, CONNACK_WAIT_PER_LATENCY * self._slowest_connack)
        if self._long_outage(self._clock()):
            learned = max(learned, self._long_connack_wait)
        return min(learned, self.keepalive)

    def _end_round(self, now: float) -> float:
        """Every address failed once: the next round starts ``round_interval`` after this one did."""
        assert self._round_started is not None
        if self._long_outage(now):
            cap = RECONNECT_DELAY_MAX
            self._long_connack_wait = min(self._long_connack_wait * 2, self.keepalive)
        else:
            cap = FAST_ROUND_INTERVAL
        interval = min(self._round_interval, cap)
        self._round_interval = min(self._round_interval * 2, RECONNECT_DELAY_MAX)
        delay = max(0.0, self._round_started + interval - now)
        self._failed_in_round = 0
        self._round_started = now + delay
        return delay

    def _long_outage(self, now: float) -> bool:
        return self._outage_started is not None and now - self._outage_started >= self.patience

    def _reset(self) -> None:
        self._single_delay = RECONNECT_DELAY_MIN
        self._failed_in_round = 0
        self._round_started = None
        self._round_interval = FIRST_ROUND_INTERVAL
        self._outage_started = None
        self._long_connack_wait = CONNACK_WAIT
