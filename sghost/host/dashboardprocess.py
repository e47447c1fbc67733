"""The supervisor's handle on the dashboard's process (``[dashboard] enabled = true``).

The page is served by a process of its own, forked by the zygote like the
meta-resource (:data:`RUNNER`, docs/dashboard.md), so a slow or hung browser
never touches the supervisor's loop. That process gets everything it shows
through the local control socket, as ``sghost status`` and ``sghost logs`` do.
If it dies it is started again, after 1 s, doubling up to a minute while it
keeps dying quickly (a port taken by another program, for example). If it
hangs (it sends no heartbeat for ``[dashboard] watchdog`` seconds, see
:mod:`sghost.dashboard.liveness`), it is killed and started again the same way.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any, Protocol

from sghost.config.dashboard import DashboardConfig, shown_listen
from sghost.health.reporting import Scheduler
from sghost.process import events
from sghost.process.oslevel import describe_exit, kill_group
from sghost.process.pipes import ChildPipes, PipeHost, log_output
from sghost.process.spec import ChildSpec

ROLE = "dashboard"
"""``ChildSpec.role`` of the dashboard's process."""
RUNNER = "sghost.dashboard.runner:run_dashboard"
"""What the zygote runs for it (named, not imported: the supervisor never loads the web server)."""
NAME = "dashboard"
"""How its output is tagged in sghost's log."""
RESPAWN_DELAY = 1.0
MAX_RESPAWN_DELAY = 60.0
STABLE_AFTER = 60.0
"""A process that ran this long is restarted after RESPAWN_DELAY again, not after the grown delay."""
STARTUP_GRACE = 30.0
"""Seconds a new process has for its first heartbeat (importing the web server on a slow board), at least."""

log = logging.getLogger("sghost")


class DashboardHost(PipeHost, Protocol):
    """What the handle needs from the supervisor."""

    timers: Scheduler

    def spawn(self, owner: Any, spec: ChildSpec, fds: list[int]) -> None: ...


class DashboardProcess:
    """Starts, restarts and stops the dashboard's process as the manifest says."""

    def __init__(
        self,
        host: DashboardHost,
        config: DashboardConfig,
        control_socket: str,
        host_name: str,
        output: logging.Logger,
        stopping: Callable[[], bool],
    ) -> None:
        self.host = host
        self.config = config
        self.control_socket = control_socket
        self.host_name = host_name
        self.output = output
        self.stopping = stopping
        self.pipes = ChildPipes(host, self.event, self.output_line)
        self.pid: int | None = None
        self._started_at = 0.0
        self._delay = RESPAWN_DELAY
        self._pending = False
        """A spawn was asked for, or a respawn is scheduled."""
        self._replacing = False
        self._last_heartbeat: float | None = None
        """When the running process last showed life; None until its first heartbeat."""

    @property
    def name(self) -> str:
        return NAME

    def spec(self) -> ChildSpec:
        settings = {"config": self.config, "control_socket": self.control_socket, "host": self.host_name}
        return ChildSpec(name=NAME, type_name="", settings=settings, host="", port=0, role=ROLE)

    def start(self) -> None:
        """Start the process when the manifest enables it (and it is not running or about to)."""
        if not self.config.enabled or self.pid is not None or self._pending or self.stopping():
            return
        mode = "with control" if self.config.control else "read-only"
        scheme = "https" if self.config.certificate_directory else "http"
        log.info("dashboard: %s://%s (%s)", scheme, shown_listen(self.config), mode)
        self._pending = True
        child_ends = self.pipes.open()
        self.host.spawn(self, self.spec(), child_ends)
        for fd in child_ends:
            os.close(fd)

    def reconfigure(self, config: DashboardConfig) -> None:
        """A reload changed ``[dashboard]``: a new process with the new settings (or none)."""
        if config == self.config:
            return
        self.config = config
        if self.pid is not None:
            self._delay = RESPAWN_DELAY
            self._replacing = True
            kill_group(self.pid, signal.SIGTERM)  # exited() starts the new one
        elif not config.enabled:
            log.info("dashboard: off")
        else:
            self.start()

    def spawned(self, pid: int) -> None:
        self._pending = False
        self.pid = pid
        self._started_at = time.monotonic()
        self._last_heartbeat = None
        self._watch(pid)

    def _watch(self, pid: int) -> None:
        """Check the running process for a heartbeat four times per ``watchdog`` (off when it is 0)."""
        watchdog = self.config.watchdog
        if watchdog <= 0:
            return

        def check() -> None:
            if self.pid != pid or self.stopping():
                return  # it ended, or another process runs now with its own check
            if self._silent_for(watchdog):
                log.error("dashboard: no heartbeat for %g s ([dashboard] watchdog); killing pid %s", watchdog, pid)
                kill_group(pid, signal.SIGKILL)  # exited() starts it again
                return
            self.host.timers.call_later(watchdog / 4, check)

        self.host.timers.call_later(watchdog / 4, check)

    def _silent_for(self, watchdog: float) -> bool:
        now = time.monotonic()
        if self._last_heartbeat is None:
            return now - self._started_at > max(watchdog, STARTUP_GRACE)
        return now - self._last_heartbeat > watchdog

    def spawn_failed(self, error: str) -> None:
        log.error("dashboard: cannot start its process: %s", error)
        self._pending = False
        self.pipes.close()
        self._respawn_later()

    def exited(self, status: int) -> None:
        self.pipes.drain()
        self.pipes.close()
        self.pid = None
        replacing, self._replacing = self._replacing, False
        if self.stopping():
            return
        if not self.config.enabled:
            log.info("dashboard: off")
            return
        if replacing:
            self.start()
            return
        ran = time.monotonic() - self._started_at
        if ran >= STABLE_AFTER:
            self._delay = RESPAWN_DELAY
        log.error("dashboard: its process ended (%s); starting it again in %g s", describe_exit(status), self._delay)
        self._respawn_later()

    def _respawn_later(self) -> None:
        self._pending = True
        delay, self._delay = self._delay, min(self._delay * 2, MAX_RESPAWN_DELAY)

        def respawn() -> None:
            self._pending = False
            self.start()

        self.host.timers.call_later(delay, respawn)

    def output_line(self, stream: str, line: str) -> None:
        log_output(self.output, NAME, stream, line)

    def event(self, event: dict[str, Any]) -> None:
        """The process sends heartbeats only (and its events pipe tells when it ends)."""
        if event.get("kind") == events.HEARTBEAT:
            self._last_heartbeat = time.monotonic()
