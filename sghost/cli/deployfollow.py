"""Push deployment documents over one MQTT connection and follow each gateway's progress.

For each deployment the follower subscribes to ``<prefix>data/<host>/deployment``
first and publishes the document retained at QoS 1 on
``<prefix>command/<host>/deploy`` only once the broker has acknowledged that
subscription, so no state the gateway publishes can be missed. Only progress
documents carrying the document's own ``id`` count: a retained document of an
older deployment is ignored, while one of the same id (a document pushed again
after it was applied, which the gateway ignores) is its current state.

The client speaks MQTT 5 so that a broker that refuses the publication (an ACL)
says so in its acknowledgement instead of dropping the document silently.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from sghost.cli.fleet import FleetError

STATES = (
    "received", "rejected", "installing", "applying", "verifying",
    "successful", "rolling-back", "rolled-back", "failed",
)
"""Every ``state`` of a gateway's progress document, in the issue's order."""
SUCCESSFUL = "successful"
FAILED_STATES = frozenset({"rejected", "failed", "rolled-back"})
FINAL_STATES = FAILED_STATES | {SUCCESSFUL}
TIMEOUT = "timeout"
"""The outcome of a deployment without a final state before its deadline."""
LOOP_STEP = 0.05
UNSUPPORTED_PROTOCOL = (1, 0x84)
"""CONNACK codes for an MQTT version the broker does not speak (3.1.1 and 5)."""


def command_topic(prefix: str, host: str) -> str:
    """Where a deployment document for ``host`` is published (retained)."""
    return f"{prefix}command/{host}/deploy"


def state_topic(prefix: str, host: str) -> str:
    """Where ``host``'s gateway publishes its retained progress document."""
    return f"{prefix}data/{host}/deployment"


@dataclass(frozen=True)
class Progress:
    """One progress document of a gateway: ``id``, ``sequence``, ``state``, ``reason``, ``generation``, ``at``."""

    id: str
    sequence: int | None
    state: str
    reason: str | None
    generation: int | None
    at: str | None

    def describe(self) -> str:
        """``verifying (generation 5, 2026-12-04T17:01:02Z)`` and ``: reason`` when there is one."""
        details = [f"generation {self.generation}"] if self.generation is not None else []
        details += [self.at] if self.at else []
        text = self.state + (f" ({', '.join(details)})" if details else "")
        return text + (f": {self.reason}" if self.reason else "")


def parse_progress(payload: bytes) -> Progress | None:
    """The progress document in ``payload``, or None for one that is not (empty: a cleared retained message)."""
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(value, dict) or not isinstance(value.get("id"), str) or not isinstance(value.get("state"), str):
        return None
    sequence, generation = value.get("sequence"), value.get("generation")
    reason, at = value.get("reason"), value.get("at")
    return Progress(
        id=value["id"],
        sequence=sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else None,
        state=printable(value["state"]),
        reason=printable(str(reason)) if reason not in (None, "") else None,
        generation=generation if isinstance(generation, int) and not isinstance(generation, bool) else None,
        at=printable(str(at)) if at else None,
    )


def printable(text: str) -> str:
    """``text`` on one line, safe for a terminal: whitespace runs become one space, control characters U+FFFD."""
    return "".join(char if char.isprintable() else "\ufffd" for char in " ".join(text.split()))


@dataclass
class Push:
    """One document on its way to one gateway, and what became of it."""

    host: str
    prefix: str
    deployment_id: str
    payload: bytes
    timeout: float
    states: list[Progress] = field(default_factory=list)
    published: bool = False
    outcome: str | None = None
    """``successful``, ``rejected``, ``failed``, ``rolled-back``, ``timeout`` or None while it runs."""
    error: str | None = None
    deadline: float = 0.0
    ignored: int = 0
    """Messages on the state topic that were no progress document."""

    @property
    def command_topic(self) -> str:
        return command_topic(self.prefix, self.host)

    @property
    def state_topic(self) -> str:
        return state_topic(self.prefix, self.host)

    @property
    def last(self) -> Progress | None:
        return self.states[-1] if self.states else None

    @property
    def done(self) -> bool:
        return self.outcome is not None

def _finished(push: Push, now: float) -> bool:
    """Whether ``push`` has its outcome (``timeout`` once past its deadline) and the broker has its document."""
    if push.outcome is None and now >= push.deadline:
        push.outcome = TIMEOUT
    return push.done and (push.published or now >= push.deadline)


StateCallback = Callable[[Push, Progress], None]
NoteCallback = Callable[[Push, str], None]


class DeploymentFollower:
    """Pushes :class:`Push` es over one connected client and runs its loop until they end.

    ``on_state(push, progress)`` is called for each new state of a push's own
    deployment, ``on_note(push, text)`` for what the operator should know
    besides (a message on the state topic that is no progress document).
    Raises FleetError when the broker refuses, or the connection is lost.
    """

    def __init__(
        self, client: mqtt.Client, where: str, on_state: StateCallback, on_note: NoteCallback | None = None
    ) -> None:
        self.client = client
        self.where = where
        self.on_state = on_state
        self.on_note = on_note or (lambda push, text: None)
        self.connected = False
        self.unsupported_protocol = False
        """The broker refused the connection for its MQTT version (try 3.1.1)."""
        self.error: str | None = None
        self._by_state_topic: dict[str, Push] = {}
        self._by_subscribe_mid: dict[int, Push] = {}
        self._by_publish_mid: dict[int, Push] = {}
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_message

    def wait_connected(self, timeout: float) -> None:
        """Run the loop until the broker accepted the connection; FleetError otherwise."""
        deadline = time.monotonic() + timeout
        self._loop_until(lambda: self.connected, deadline)
        if not self.connected:
            raise FleetError(f"the broker {self.where} did not accept the connection within {timeout} s")

    def start(self, push: Push) -> None:
        """Subscribe to the push's state topic; its document is published once that is acknowledged."""
        if push.state_topic in self._by_state_topic:
            raise ValueError(f"{push.host}: already pushing on {push.state_topic}")
        push.deadline = time.monotonic() + push.timeout
        self._by_state_topic[push.state_topic] = push
        result, mid = self.client.subscribe(push.state_topic, qos=1)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise FleetError(f"cannot subscribe to {push.state_topic} on {self.where}: {mqtt.error_string(result)}")
        self._by_subscribe_mid[mid] = push

    def wait(self, pushes: Iterable[Push]) -> None:
        """Run the loop until each push has an outcome (``timeout`` once its deadline has passed)."""
        pending = list(pushes)
        while True:
            now = time.monotonic()
            for push in [push for push in pending if _finished(push, now)]:
                pending.remove(push)
                self._forget(push)
            if not pending:
                return
            self._step(min(push.deadline for push in pending))

    def _forget(self, push: Push) -> None:
        """Stop following a finished push (a long rollout keeps one subscription per running host only)."""
        if self._by_state_topic.pop(push.state_topic, None) is not None:
            self.client.unsubscribe(push.state_topic)

    def _loop_until(self, condition: Callable[[], bool], deadline: float) -> None:
        while not condition() and time.monotonic() < deadline:
            self._step(deadline)

    def _step(self, deadline: float) -> None:
        code = self.client.loop(timeout=max(0.01, min(deadline - time.monotonic(), LOOP_STEP)))
        if self.error is not None:
            raise FleetError(f"{self.where}: {self.error}")
        if code != mqtt.MQTT_ERR_SUCCESS:
            raise FleetError(f"lost the connection to the broker {self.where}: {mqtt.error_string(code)}")

    # -- callbacks (run inside client.loop) --------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: Any, props: object) -> None:
        if reason.is_failure:
            self.unsupported_protocol = getattr(reason, "value", None) in UNSUPPORTED_PROTOCOL
            self.error = f"the broker refused the connection: {reason}"
        else:
            self.connected = True

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, reasons: Any, props: object) -> None:
        push = self._by_subscribe_mid.pop(mid, None)
        if push is None:
            return
        failed = [str(code) for code in reasons if code.is_failure]
        if failed:
            self.error = f"the broker refused the subscription to {push.state_topic}: {', '.join(failed)}"
            return
        info = client.publish(push.command_topic, push.payload, qos=1, retain=True)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.error = f"cannot publish on {push.command_topic}: {mqtt.error_string(info.rc)}"
            return
        self._by_publish_mid[info.mid] = push

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: Any, props: object) -> None:
        push = self._by_publish_mid.pop(mid, None)
        if push is None:
            return
        if reason is not None and reason.is_failure:
            self.error = f"the broker refused the document on {push.command_topic}: {reason}"
            return
        push.published = True

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        push = self._by_state_topic.get(message.topic)
        if push is None or push.done or not message.payload:
            return
        progress = parse_progress(message.payload)
        if progress is None:
            push.ignored += 1
            if push.ignored == 1:  # once per push: a flood would bury the states
                self.on_note(push, f"ignored a message on {message.topic} that is not a progress document "
                             "(further ones are counted, not shown)")
            return
        if progress.id != push.deployment_id or progress == push.last:
            return
        push.states.append(progress)
        self.on_state(push, progress)
        if progress.state in FINAL_STATES:
            push.outcome = progress.state
