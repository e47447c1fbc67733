"""Event hooks: programs from ``[hooks]`` run when a resource changes state.

The supervisor's loop is single-threaded and must never wait for a hook, so a
hook is started with :class:`subprocess.Popen` (argv, no shell, stdin from
/dev/null, all other descriptors closed, a session and process group of its
own) and reaped by a timer on that loop. A hook that outlives ``hook_timeout``
gets SIGTERM on its group, then SIGKILL after :data:`KILL_GRACE`: it is gone
within ``hook_timeout`` + 1 s, even if it ignores SIGTERM. A hook that
cannot start or ends with an error is logged; supervision never waits for it.

Events (supervisord's event listeners are the model): ``on_state`` for every
state change, ``on_fatal`` and ``on_backoff`` when a resource enters that
state, ``on_restart`` when sghost starts a new process for a resource after an
earlier one ended. Each hook sees ``SGHOST_RESOURCE``, ``SGHOST_STATE``,
``SGHOST_PREVIOUS_STATE``, ``SGHOST_ERROR``, ``SGHOST_RESTARTS`` and
``SGHOST_HOST`` in its environment. At most one run per event, resource and
state is under way at a time; a change that comes while it runs is skipped
(and logged).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from sghost.config.integrations import HooksConfig
from sghost.health.reporting import Scheduler

POLL_INTERVAL = 0.1
"""Seconds between checks of running hooks (only while some run)."""
KILL_GRACE = 0.5
"""Seconds between SIGTERM and SIGKILL for a hook past its timeout: with POLL_INTERVAL, a hook that
ignores SIGTERM is gone within ``hook_timeout`` + 1 s."""
FATAL = "fatal"
BACKOFF = "backoff"
_SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")
"""Not handed on: a hook must not speak for sghost to systemd."""

log = logging.getLogger("sghost")


@dataclass
class _Run:
    event: str
    resource: str
    process: subprocess.Popen[bytes]
    deadline: float
    terminated_at: float | None = None
    skipped: int = 0


class HookRunner:
    """Starts the configured hooks for a resource's state changes and reaps them from the event loop."""

    def __init__(self, config: HooksConfig, host_name: str, timers: Scheduler) -> None:
        self.config = config
        self.host_name = host_name
        self.timers = timers
        self._states: dict[str, str] = {}
        self._restarts: dict[str, int] = {}
        self._running: dict[tuple[str, str, str], _Run] = {}
        self._polling = False

    def state_changed(self, resource: str, state: str, error: str, restarts: int) -> None:
        """A resource's fields changed (state, error, restarts...): run the hooks its change calls for."""
        previous = self._states.get(resource)
        restarted = restarts > self._restarts.get(resource, restarts)
        self._states[resource] = state
        self._restarts[resource] = restarts
        if previous is None:
            return  # the resource was just added (stopped): nothing has happened to it yet
        details = {"state": state, "previous": previous, "error": error, "restarts": restarts}
        if state != previous:
            self._run("on_state", resource, details)
            if state == FATAL:
                self._run("on_fatal", resource, details)
            elif state == BACKOFF:
                self._run("on_backoff", resource, details)
        if restarted:
            self._run("on_restart", resource, details)

    def forget(self, resource: str) -> None:
        """A resource left the manifest; a new one of that name starts afresh."""
        self._states.pop(resource, None)
        self._restarts.pop(resource, None)

    @property
    def running(self) -> int:
        return len(self._running)

    # ------------------------------------------------------------- running

    def _run(self, event: str, resource: str, details: dict[str, Any]) -> None:
        argv = self.config.command(event)
        if not argv:
            return
        key = (event, resource, str(details["state"]))
        busy = self._running.get(key)
        if busy is not None:
            busy.skipped += 1
            if busy.skipped == 1:
                log.warning(
                    "[%s] hook %s for state %s is still running (pid %d): this change is not reported to it",
                    resource, event, details["state"], busy.process.pid,
                )
            return
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                close_fds=True,
                start_new_session=True,
                env=self._environment(resource, details),
            )
        except (OSError, ValueError) as error:
            log.error("[%s] hook %s: cannot run %s: %s", resource, event, argv[0], error)
            return
        log.debug("[%s] hook %s started, pid %d", resource, event, process.pid)
        self._running[key] = _Run(event, resource, process, time.monotonic() + self.config.hook_timeout)
        if not self._polling:
            self._polling = True
            self.timers.call_later(POLL_INTERVAL, self._poll)

    def _environment(self, resource: str, details: dict[str, Any]) -> dict[str, str]:
        environment = {key: value for key, value in os.environ.items() if key not in _SYSTEMD_VARIABLES}
        environment.update(
            SGHOST_RESOURCE=resource,
            SGHOST_STATE=str(details["state"]),
            SGHOST_PREVIOUS_STATE=str(details["previous"]),
            SGHOST_ERROR=str(details["error"] or ""),
            SGHOST_RESTARTS=str(details["restarts"]),
            SGHOST_HOST=self.host_name,
        )
        return environment

    def _poll(self) -> None:
        self._polling = False
        now = time.monotonic()
        for key, run in list(self._running.items()):
            if run.process.poll() is not None:
                del self._running[key]
                self._finished(run)
            elif run.terminated_at is None and now >= run.deadline:
                log.warning(
                    "[%s] hook %s (pid %d) still running after hook_timeout %g s: SIGTERM",
                    run.resource, run.event, run.process.pid, self.config.hook_timeout,
                )
                run.terminated_at = now
                _signal_group(run.process.pid, signal.SIGTERM)
            elif run.terminated_at is not None and now >= run.terminated_at + KILL_GRACE:
                _signal_group(run.process.pid, signal.SIGKILL)
        if self._running:
            self._polling = True
            self.timers.call_later(POLL_INTERVAL, self._poll)

    def _finished(self, run: _Run) -> None:
        code = run.process.returncode
        if run.terminated_at is not None:
            log.warning("[%s] hook %s (pid %d) ended after its timeout", run.resource, run.event, run.process.pid)
        elif code < 0:
            log.warning("[%s] hook %s killed by %s", run.resource, run.event, _signal_name(-code))
        elif code != 0:
            log.warning("[%s] hook %s exited with code %d", run.resource, run.event, code)
        if run.skipped:
            log.warning("[%s] hook %s: %d change(s) skipped while it ran", run.resource, run.event, run.skipped)

    def close(self) -> None:
        """At sghost's exit: let running hooks finish within their timeout, then end them."""
        while self._running:
            self._poll()
            if self._running:
                time.sleep(POLL_INTERVAL)  # sghost is exiting; nothing else is left to serve


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
