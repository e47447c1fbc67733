"""The supervisor's side of the meta-resource: dead bands, and the handle on the meta-resource's process.

The meta-resource (:mod:`sghost.health.metaresource`, sghost's own resource that
publishes every resource's health) runs in a process of its own; the supervisor
drives it through :class:`MetaResourceProcess`, which sends the messages of
:mod:`sghost.health.metamessages` as JSON lines on a pipe.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any, Protocol

from sghost.health import metamessages as msg
from sghost.health.deployrelay import DEPLOY_PART, Reassembler
from sghost.process import events
from sghost.process.oslevel import describe_exit, kill_group
from sghost.process.pipes import ChildPipes, PipeHost, log_output
from sghost.process.spec import ChildSpec

UPTIME_GROWTH = 1.1
"""An uptime is reported again once it grew by 10 % (or went back, after a restart)."""
CPU_STEP = 1.0
"""Percentage points a CPU figure must move by to be reported again."""
MEMORY_STEP = 0.05
"""Fraction (at least 1 MiB) a memory figure must move by to be reported again."""
RESPAWN_DELAY = 1.0
STALL_TIMEOUT = 10.0
"""Seconds the meta-resource process may leave its full pipe unread before it is replaced."""
MAX_BACKLOG = 4 << 20
"""Bytes kept for a meta-resource process that does not read; beyond them it is replaced at once."""
HEARTBEAT_TIMEOUT = 10.0
"""Seconds without a heartbeat from the meta-resource's main loop (it sends one every 2 s) before it is replaced."""

log = logging.getLogger("sghost")


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def worth_reporting(field: str, reported: Any, value: Any) -> bool:
    """Whether ``value`` moved far enough from the ``reported`` one to be sent; dead bands keep an idle host quiet."""
    if reported is None or type(reported) is not type(value) or not isinstance(value, int | float):
        return reported != value
    if field.endswith("uptime"):
        return value < reported or value >= reported * UPTIME_GROWTH - 1e-9
    if field.endswith("cpu"):
        return abs(value - reported) >= CPU_STEP
    if field.endswith("memory") or field.endswith("_mb"):
        return abs(value - reported) >= max(1.0, reported * MEMORY_STEP)
    return value != reported


class Scheduler(Protocol):
    def call_later(self, delay: float, callback: Callable[[], Any]) -> Any: ...


class MetaResourceHost(PipeHost, Protocol):
    """What the meta-resource's handle needs from the supervisor."""

    timers: Scheduler

    def spawn(self, owner: Any, spec: ChildSpec, fds: list[int]) -> None: ...
    def command(self, op: str, name: str) -> tuple[bool, str]: ...
    def meta_resource_spawned(self, restarted: bool) -> None: ...
    def meta_resource_stopped(self) -> None: ...
    def uplink_changed(self, state: str, queued: int | None, dropped: int | None) -> None: ...
    def meta_resource_moved(self) -> None: ...
    def deployment_received(self, payload: bytes) -> None: ...


class MetaResourceProcess:
    """The supervisor's handle on the meta-resource process."""

    def __init__(self, host: MetaResourceHost, spec: ChildSpec, output: logging.Logger) -> None:
        self.host = host
        self.spec = spec
        self.output = output
        self.pipes = ChildPipes(host, self.event, self.output_line)
        self.pid: int | None = None
        self.connected = False
        self.broker: str | None = None
        """The ``host:port`` the meta-resource last connected to (a node of a cluster)."""
        self.stopping = False
        self._reported: dict[str, Any] = {}
        self._spawns = 0
        self._respawn = False
        self._backlog = bytearray()
        self._stalled_since: float | None = None
        self._last_heartbeat = 0.0
        self._deployment = Reassembler()

    @property
    def name(self) -> str:
        return self.spec.name

    def is_connected(self) -> bool:
        return self.connected

    # --------------------------------------------------------------- process

    def start(self) -> None:
        child_ends = self.pipes.open(inbound=True)
        self.host.spawn(self, self.spec, child_ends)
        for fd in child_ends:
            os.close(fd)
        self._spawns += 1

    def stop(self) -> None:
        """Ask the process to publish presence ``False`` and end; ``meta_resource_stopped`` follows."""
        self.stopping = True
        if self.pid is None:
            self.host.meta_resource_stopped()
            return
        self._send(msg.Stop(op=msg.STOP))

    def restart(self, spec: ChildSpec) -> None:
        """Reconnect with new settings: the process says goodbye (presence ``False``), a new one takes over."""
        self.spec = spec
        if self.stopping or self.pid is None:
            return  # stopping anyway, or between a crash and the respawn, which uses the new spec
        self._respawn = True
        self._send(msg.Stop(op=msg.STOP))

    def spawned(self, pid: int) -> None:
        self.pid = pid
        self._last_heartbeat = time.monotonic()
        self.host.meta_resource_spawned(restarted=self._spawns > 1)
        if self.stopping:
            self._send(msg.Stop(op=msg.STOP))

    def spawn_failed(self, error: str) -> None:
        log.error("cannot start the meta-resource process: %s", error)
        self.pipes.close()
        self._ended()

    def exited(self, status: int) -> None:
        self.pipes.drain()
        self.pipes.close()
        self.pid = None
        self.connected = False
        if self._respawn and not self.stopping:
            self._respawn = False
            self.start()
            return
        if not self.stopping:
            log.error("the meta-resource process ended (%s); restarting it", describe_exit(status))
        self._ended()

    def _ended(self) -> None:
        if self.stopping:
            self.host.meta_resource_stopped()
        else:
            self.host.timers.call_later(RESPAWN_DELAY, self.start)

    def output_line(self, stream: str, line: str) -> None:
        log_output(self.output, self.name, stream, line)

    def event(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        if kind == events.HEARTBEAT:
            self._last_heartbeat = time.monotonic()
        elif kind in (events.CONNECTED, events.DISCONNECTED):
            self.connected = kind == events.CONNECTED
            if isinstance(event.get("broker"), str) and event["broker"] != self.broker:
                self.broker = event["broker"]
                log.info("meta-resource %s connected to the broker at %s", self.name, self.broker)
                self.host.meta_resource_moved()
        elif kind == events.REMOTE:
            op, name = str(event.get("op", "")), str(event.get("payload", ""))
            ok, message = self.host.command(op, name) if name else (False, f"{op} needs a resource name as payload")
            log.info("remote control: %s %r -> %s", op, name, message)
            request_id = event.get("id")
            answer = message if ok else f"error: {message}"
            self._send(msg.Answer(op=msg.ANSWER, id=request_id if isinstance(request_id, int) else None, text=answer))
        elif kind == events.UPLINK:
            queued, dropped = event.get("queued"), event.get("dropped")
            self.host.uplink_changed(str(event.get("state")), _count(queued), _count(dropped))
        elif kind == events.CONNECT_ERROR:
            log.warning("meta-resource %s: %s", self.name, event.get("text"))
        elif kind == DEPLOY_PART:
            payload = self._deployment.feed(event)
            if payload is not None:
                self.host.deployment_received(payload)

    # ------------------------------------------------------------ publishing

    def report(self, key: str, value: Any) -> Any:
        """Return the value to show for ``key``: ``value`` if it moved enough, else the one shown before."""
        reported = self._reported.get(key)
        if worth_reporting(key, reported, value):
            self._reported[key] = reported = value
        return reported

    def update(self, resource_name: str, values: dict[str, Any]) -> dict[str, Any]:
        """Publish one resource's fields (each past its dead band); return the values as shown."""
        shown = {field: self.report(f"{resource_name}_{field}", value) for field, value in values.items()}
        texts = {field: "" if value is None else str(value) for field, value in shown.items()}
        self._send(msg.Update(op=msg.UPDATE, name=resource_name, values=texts))
        return shown

    def publish_health(self, document: dict[str, Any]) -> None:
        self._send(msg.Health(op=msg.HEALTH, document=document))

    def capabilities_lost(self, topics: list[str]) -> None:
        self._send(msg.Lost(op=msg.LOST, topics=topics))

    def send_value(self, signal: str, payload: str) -> None:
        """Publish one retained, announced data signal of the meta-resource (``deployment``, ``deploy_rejected``)."""
        self._send(msg.Value(op=msg.VALUE, signal=signal, payload=payload))

    def rebirth(self) -> None:
        """Publish presence, announcements and every health topic again."""
        self._send(msg.Rebirth(op=msg.REBIRTH))

    def homeassistant(
        self, discovery: bool, prefix: str, version: str, remote_control: bool,
        resources: dict[str, msg.DiscoveryResource],
    ) -> None:
        """Configure Home Assistant discovery (sghost.health.homeassistant); ``discovery=False`` withdraws it."""
        self._send(msg.HomeAssistant(
            op=msg.HOMEASSISTANT, discovery=discovery, prefix=prefix, version=version,
            remote_control=remote_control, resources=resources,
        ))

    def forget(self, resource_name: str) -> None:
        for key in [key for key in self._reported if key.startswith(f"{resource_name}_")]:
            del self._reported[key]
        self._send(msg.Forget(op=msg.FORGET, name=resource_name))

    def _send(self, message: msg.MetaMessage) -> None:
        """Queue ``message``; the host calls :meth:`flush` at the end of its loop's turn.

        So the updates of one turn (20 resources starting, a health sample) go
        in one write and wake the process once, not once per message.
        """
        if self.pipes.inbound is None:
            return  # between a crash and the respawn; meta_resource_spawned() sends everything again
        self._backlog += msg.encode(message)

    def check(self) -> None:
        """Called at every tick: write what waits, and replace a process whose main loop is stuck."""
        self.flush()
        silent_for = time.monotonic() - self._last_heartbeat
        if self.pid is not None and not self.stopping and silent_for >= HEARTBEAT_TIMEOUT:
            self._replace_stuck(f"has sent no heartbeat for {silent_for:.0f} s")

    def flush(self) -> None:
        """Write what the pipe takes now, never blocking the supervisor; replace a process that stopped reading."""
        fd = self.pipes.inbound
        try:
            while self._backlog and fd is not None:
                del self._backlog[: os.write(fd, self._backlog)]
        except BlockingIOError:
            pass
        except OSError:
            self._backlog.clear()  # the process is gone; exited() restarts it and everything is sent again
        if fd is None or not self._backlog:
            self._backlog.clear()
            self._stalled_since = None
            return
        now = time.monotonic()
        if self._stalled_since is None:
            self._stalled_since = now
        if now - self._stalled_since >= STALL_TIMEOUT or len(self._backlog) > MAX_BACKLOG:
            waiting = len(self._backlog) // 1024
            self._replace_stuck(f"has not read its pipe for {now - self._stalled_since:.0f} s ({waiting} KiB waiting)")

    def _replace_stuck(self, why: str) -> None:
        log.error("the meta-resource process (pid %s) %s: killing it; a new one gets every state", self.pid, why)
        self._backlog.clear()
        self._stalled_since = None
        self._last_heartbeat = time.monotonic()  # one kill per stall: the exit and respawn follow
        if self.pid is not None:
            kill_group(self.pid, signal.SIGKILL)
