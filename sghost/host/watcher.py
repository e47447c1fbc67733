"""One resource under supervision: its process, its state and its restart policy.

States (as supervisord users know them): ``starting``, ``running``,
``backoff``, ``stopping``, ``stopped``, ``fatal``; and ``waiting``: not
started because a resource it ``depends_on`` is not ready (``waiting_for``).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any, Protocol

from sghost.config.manifest import ResourceConfig
from sghost.health.states import BACKOFF, FATAL, RUNNING, STARTING, STATES, STOPPED, STOPPING, WAITING
from sghost.host.policy import Decision, RestartTracker
from sghost.host.timers import Timer, Timers
from sghost.process import events, oslevel
from sghost.process.exitcodes import EXIT_BROKER_REFUSED, EXIT_PLUGIN_ERROR, EXIT_TYPE_MISSING
from sghost.process.pipes import ChildPipes, PipeHost, log_output
from sghost.process.spec import ChildSpec

COUNTED = ("dropped", "refused")
"""Publish counters kept per resource across its restarts (from the child's ``counters`` events)."""

log = logging.getLogger("sghost")


class Host(PipeHost, Protocol):
    """What a watcher needs from the supervisor."""

    timers: Timers

    def spawn(self, watcher: Watcher, spec: ChildSpec, fds: list[int]) -> None: ...
    def state_changed(self, watcher: Watcher) -> None: ...
    def capabilities_lost(self, watcher: Watcher, topics: list[str]) -> None: ...
    def broker_reachable(self) -> bool: ...
    def child_spec(self, config: ResourceConfig) -> ChildSpec: ...
    def unready_dependencies(self, watcher: Watcher) -> list[str]: ...
    def dependency_pids(self, watcher: Watcher) -> dict[str, int | None]: ...
    def output_line(self, watcher: Watcher, stream: str, line: str) -> None: ...


class Watcher:
    """Supervises one resource; driven by the supervisor's event loop."""

    def __init__(
        self, config: ResourceConfig, host: Host, output: logging.Logger, file_log: logging.Logger | None = None
    ) -> None:
        self.config = config
        self.name = config.name
        self.host = host
        self.output = output
        self.file_log = file_log
        self.state = STOPPED
        self.pid: int | None = None
        self.started_at = 0.0
        self.restarts = 0
        self.spawns = 0
        self.last_error = ""
        self.announced: list[str] = []
        self.last_heartbeat = 0.0
        self.connected = False
        self.broker: str | None = None
        self.pipes = ChildPipes(host, self.event, self.output_line)
        self._timer: Timer | None = None
        self._stop_wanted = False
        self._restart_wanted = False
        self._spawn_pending = False
        self._kill_reason: str | None = None
        self._reported_error: str | None = None
        self._memory_strikes = 0
        self.tracker = self._new_tracker()
        self._counted_before: dict[str, int] = dict.fromkeys(COUNTED, 0)
        """The publish counters of this resource's ended processes."""
        self._counted_now: dict[str, int] = dict.fromkeys(COUNTED, 0)
        self.queued = 0
        """QoS >= 1 messages the running process has waiting for the broker's acknowledgement."""
        self.waiting_for: list[str] = []
        """The dependencies this resource waits for, while ``waiting``."""
        self.dependency_pids: dict[str, int | None] = {}
        """The pid each dependency had when this process was started (for ``restart_with_dependencies``)."""
        self._setup_done = False
        self._wants_signal = False
        self._signalled = False
        self._ready_timer: Timer | None = None

    # ------------------------------------------------------------- commands

    def start(self) -> None:
        """Start the process unless it is already (being) started.

        Asked while a stop is under way, the start is not lost: a process still
        being spawned is kept, and one that is stopping starts again once it
        has ended (as a restart does).
        """
        if self._stop_wanted and self._spawn_pending:
            self._stop_wanted = False  # spawned() would have terminated it
            return
        if self._stop_wanted and self.pid is not None:
            self._restart_wanted = True  # _after_end starts it again
            return
        if self.pid is not None or self._spawn_pending:
            return
        self._cancel_timer()
        self._stop_wanted = False
        if self._wait_for_dependencies():
            return
        self.dependency_pids = self.host.dependency_pids(self)
        if self.spawns:
            self.restarts += 1
        self.spawns += 1
        self.announced = []
        self.connected = False
        self._kill_reason = None
        self._reported_error = None
        self._memory_strikes = 0
        self._setup_done = self._wants_signal = self._signalled = False
        self._set_state(STARTING)
        self._spawn_pending = True
        child_ends = self.pipes.open(inbound=True)
        self.host.spawn(self, self.host.child_spec(self.config), child_ends)
        for fd in child_ends:
            os.close(fd)

    def stop(self) -> None:
        """Stop the process (SIGTERM to its group, SIGKILL after ``stop_timeout``) and keep it stopped."""
        self._stop_wanted = True
        self._restart_wanted = False
        if self.state in (BACKOFF, FATAL, WAITING):
            self._cancel_timer()
            self.waiting_for = []
            self._set_state(STOPPED)
        elif self.state in (STARTING, RUNNING):
            self._terminate()

    def restart(self) -> None:
        """Restart now, forgetting past failures (this clears ``fatal``)."""
        self.tracker.clear()
        if self.state in (STARTING, RUNNING, STOPPING):
            self._stop_wanted = True
            self._restart_wanted = True
            if self.state != STOPPING:
                self._terminate()
        else:
            self.start()

    def kill_for(self, reason: str) -> None:
        """Kill a misbehaving process at once (watchdog, memory limit); it is restarted by policy."""
        if self.pid is None:
            return
        self._kill_reason = reason
        log.warning("[%s] %s: killing process group %d", self.name, reason, self.pid)
        oslevel.kill_group(self.pid, signal.SIGKILL)

    def rebirth(self) -> bool:
        """Ask the process to publish presence, announcements and current values again; False without one."""
        fd = self.pipes.inbound
        if fd is None or self.pid is None:
            return False
        try:
            os.write(fd, b'{"op":"rebirth"}\n')
        except BlockingIOError:
            log.warning("[%s] rebirth not sent: the process does not read its requests", self.name)
            return False
        except OSError:
            return False
        return True

    def reconfigure(self, config: ResourceConfig) -> None:
        self.config = config
        self.tracker = self._new_tracker()

    # --------------------------------------------------- supervisor callbacks

    def spawned(self, pid: int) -> None:
        self._spawn_pending = False
        self.pid = pid
        self.started_at = time.monotonic()
        self.last_heartbeat = self.started_at
        log.info("[%s] started, pid %d", self.name, pid)
        self.host.state_changed(self)
        if self._stop_wanted:
            self._terminate()

    def spawn_failed(self, error: str) -> None:
        self._spawn_pending = False
        self.pipes.close()
        self._record_error(f"cannot fork: {error}")
        self._after_end(1, ran_for=0.0)

    def event(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        if kind == events.HEARTBEAT:
            self.last_heartbeat = time.monotonic()
        elif kind == events.READY:
            self.announced = [str(topic) for topic in event.get("topics", [])]
            self.last_heartbeat = time.monotonic()
            self._setup_done = True
            self._wants_signal = bool(event.get("signal"))
            self._become_running_if_ready()
        elif kind == events.READY_SIGNAL:
            self._signalled = True
            self._become_running_if_ready()
        elif kind == events.CONNECTED:
            self.connected = True
            if isinstance(event.get("broker"), str):
                self.broker = event["broker"]  # with a broker cluster: the node it is connected to
                log.info("[%s] connected to the broker at %s", self.name, self.broker)
            self.host.state_changed(self)
        elif kind == events.DISCONNECTED:
            self.connected = False
            self.host.state_changed(self)
        elif kind == events.COUNTERS:
            self._counted_now = {key: _count(event.get(key)) for key in COUNTED}
            self.queued = _count(event.get("queued"))
        elif kind in (events.CONNECT_ERROR, events.PLUGIN_ERROR):
            self._reported_error = str(event.get("text", ""))
            self._record_error(self._describe_reported(kind))

    def output_line(self, stream: str, line: str) -> None:
        self.host.output_line(self, stream, line)
        level, text = log_output(self.output, self.name, stream, line)
        if self.file_log is not None:
            self.file_log.log(level, "%s", text)

    def exited(self, status: int) -> None:
        ran_for = time.monotonic() - self.started_at
        self.pipes.drain()
        self.pipes.close()
        how = self._describe_exit(status)
        if self._stop_wanted and not self._kill_reason:
            log.info("[%s] pid %s stopped after %.1f s (%s)", self.name, self.pid, ran_for, how)
        else:
            self._record_error(how)
            log.warning("[%s] pid %s ended after %.1f s: %s", self.name, self.pid, ran_for, how)
        self.pid = None
        self.connected = False
        self._count_ended_process()
        self._cancel_ready_timer()
        self.broker = None
        if self.announced:
            self.host.capabilities_lost(self, self.announced)
        self._after_end(status, ran_for)

    def check_watchdog(self, now: float) -> None:
        limit = self.config.policy.watchdog
        if limit > 0 and self.state == RUNNING and now - self.last_heartbeat > limit:
            self.kill_for(f"watchdog: no heartbeat for {limit:g} s")

    def check_memory(self, rss_mb: float) -> None:
        limit = self.config.policy.max_memory_mb
        if limit <= 0 or self.state != RUNNING:
            return
        self._memory_strikes = self._memory_strikes + 1 if rss_mb > limit else 0
        if self._memory_strikes >= 2:
            self.kill_for(f"memory: {rss_mb:.0f} MiB above max_memory_mb {limit:g}")

    def counted(self, key: str) -> int:
        """Messages ``dropped`` or ``refused`` by this resource since sghost started, over all its processes."""
        return self._counted_before[key] + self._counted_now[key]

    def _count_ended_process(self) -> None:
        for key in COUNTED:
            self._counted_before[key] += self._counted_now[key]
        self._counted_now = dict.fromkeys(COUNTED, 0)
        self.queued = 0
    @property
    def has_process(self) -> bool:
        """A process runs, or is being forked."""
        return self.pid is not None or self._spawn_pending

    @property
    def ready(self) -> bool:
        """Running, connected and announced (and, for ``ready="signal"`` types, ``context.ready()`` called)."""
        return self.state == RUNNING and self.connected and self.pid is not None

    def uptime(self) -> float:
        return time.monotonic() - self.started_at if self.pid is not None else 0.0

    # -------------------------------------------------------------- internals

    def _wait_for_dependencies(self) -> bool:
        """Enter ``waiting`` (True) while a dependency is not ready; the supervisor calls start() again."""
        blockers = self.host.unready_dependencies(self)
        if not blockers:
            self.waiting_for = []
            return False
        changed = blockers != self.waiting_for
        self.waiting_for = blockers
        if self.state != WAITING:
            log.info("[%s] waiting for %s", self.name, ", ".join(blockers))
            self._set_state(WAITING)
        elif changed:
            self.host.state_changed(self)
        return True

    def _become_running_if_ready(self) -> None:
        if self.state != STARTING or not self._setup_done:
            return
        if self._wants_signal and not self._signalled:
            if self._ready_timer is None:
                self._start_ready_timer()
            return
        self._cancel_ready_timer()
        self._set_state(RUNNING)

    def _start_ready_timer(self) -> None:
        limit = self.config.policy.ready_timeout
        spawn = self.spawns
        # The child's first events may be read before the zygote's "spawned" (two pipes): then
        # there is no pid nor start time of this process yet, and the limit counts from now.
        started = self.started_at if self.pid is not None else time.monotonic()
        remaining = max(0.0, limit - (time.monotonic() - started))

        def expire() -> None:
            self._ready_timer = None
            if self.spawns != spawn or self.state != STARTING:
                return
            if self.pid is None:  # forked, but the supervisor has not heard its pid yet
                self._ready_timer = self.host.timers.call_later(0.1, expire)
                return
            self.kill_for(f"not ready within ready_timeout {limit:g} s (context.ready() was not called)")

        self._ready_timer = self.host.timers.call_later(remaining, expire)

    def _cancel_ready_timer(self) -> None:
        if self._ready_timer is not None:
            self._ready_timer.cancel()
            self._ready_timer = None

    def _after_end(self, status: int, ran_for: float) -> None:
        if self._stop_wanted:
            self._stop_wanted = False
            self._set_state(STOPPED)
            if self._restart_wanted:
                self._restart_wanted = False
                self.start()
            return
        refused = status == EXIT_BROKER_REFUSED  # a refusal proves the broker reachable
        # A process that never became ready (ready_timeout, or an end during setup) did not run
        # stably however long it took: it backs off, and the state shows backoff between attempts.
        stable_for = 0.0 if self.state == STARTING else ran_for
        decision = self.tracker.decide(
            time.monotonic(), stable_for, status, count_failure=refused or self.host.broker_reachable()
        )
        if status == EXIT_TYPE_MISSING:
            decision = Decision(restart=True, delay=self.config.policy.backoff_max, fatal=True)
        if not decision.restart:
            self._set_state(STOPPED)
        elif decision.fatal:
            log.error(
                "[%s] fatal: more than %d failures within %g s; retrying every %g s (sghost restart %s clears it)",
                self.name, self.config.policy.max_restarts, self.config.policy.restart_window,
                decision.delay, self.name,
            )
            self._set_state(FATAL)
            self._timer = self.host.timers.call_later(decision.delay, self.start)
        elif decision.delay > 0:
            self._set_state(BACKOFF)
            self._timer = self.host.timers.call_later(decision.delay, self.start)
        else:
            self.start()

    def _terminate(self) -> None:
        if self.pid is None:
            return  # the spawn is under way; spawned() terminates it
        self._set_state(STOPPING)
        oslevel.kill_group(self.pid, signal.SIGTERM)
        self._cancel_timer()
        pid = self.pid
        self._timer = self.host.timers.call_later(self.config.policy.stop_timeout, lambda: self._force_kill(pid))

    def _force_kill(self, pid: int) -> None:
        if self.pid == pid:
            log.warning("[%s] did not stop within %g s: SIGKILL", self.name, self.config.policy.stop_timeout)
            oslevel.kill_group(pid, signal.SIGKILL)

    def _describe_exit(self, status: int) -> str:
        if self._kill_reason:
            return self._kill_reason
        if status in (EXIT_PLUGIN_ERROR, EXIT_TYPE_MISSING) and self._reported_error:
            return self._describe_reported(events.PLUGIN_ERROR)
        if status == EXIT_BROKER_REFUSED and self._reported_error:
            return self._reported_error
        return oslevel.describe_exit(status)

    def _describe_reported(self, kind: str) -> str:
        text = self._reported_error or ""
        return f"plugin error: {text}" if kind == events.PLUGIN_ERROR else text

    def _record_error(self, text: str) -> None:
        if text != self.last_error:
            self.last_error = text
            self.host.state_changed(self)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            log.debug("[%s] state %s", self.name, state)
            self.host.state_changed(self)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _new_tracker(self) -> RestartTracker:
        policy = self.config.policy
        return RestartTracker(
            policy.restart, policy.backoff_initial, policy.backoff_max, policy.max_restarts, policy.restart_window
        )


def _count(value: Any) -> int:
    """A counter from a child's event: a non-negative int, anything else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


__all__ = ["BACKOFF", "FATAL", "RUNNING", "STARTING", "STATES", "STOPPED", "STOPPING", "WAITING", "Watcher"]
