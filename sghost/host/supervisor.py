"""The supervisor (the arbiter): composes the host's parts and serves the control socket.

Data flows one way: desired state (config) -> resource table (one watcher per
resource) -> processes (forked by the zygote) -> events -> the event stream,
which the reporters follow (the meta-resource's topics and health document,
Home Assistant discovery, the metrics textfile, the hooks). The supervisor has
no threads and does not load paho: the meta-resource that publishes runs in a
process of its own (sghost.health.metaresource). docs/architecture.md has the picture.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from typing import TYPE_CHECKING, Any

from sgframework.constants import PREFIX_COMMANDAVAILABLE
from sgframework.topics import build_topic
from sghost import __version__
from sghost.config.manifest import HostConfig, ManifestError
from sghost.deploy.startup import StartPlan
from sghost.health.reporting import MetaResourceProcess
from sghost.host import desiredstate, systemd
from sghost.host.broker import BrokerError
from sghost.host.brokerlink import COMMANDS, BrokerLink
from sghost.host.control import ControlError, ControlServer, make_handler, socket_path_for
from sghost.host.dashboardprocess import ROLE as DASHBOARD
from sghost.host.dashboardprocess import RUNNER as DASHBOARD_RUNNER
from sghost.host.dashboardprocess import DashboardProcess
from sghost.host.desiredstate import DesiredState
from sghost.host.eventfollowers import EventFollowers
from sghost.host.eventstream import (
    CapabilitiesLost,
    DesiredStateApplied,
    Event,
    EventStream,
    HostStopping,
    MetaResourceConnected,
    MetaResourceSpawned,
    UplinkChanged,
)
from sghost.host.followers import DiscoveryFollower, HookFollower, MetricsFile
from sghost.host.hooks import HookRunner
from sghost.host.logring import MAX_FOLLOWERS, LogBook
from sghost.host.loop import TICK, EventLoop
from sghost.host.metafeed import MetaResourceFeed
from sghost.host.sampling import Sampler
from sghost.host.table import ResourceTable
from sghost.host.timers import Timers
from sghost.host.uplinkstatus import UplinkStatus
from sghost.host.watcher import RUNNING, STOPPED
from sghost.host.zygotelink import ProcessOwner, ZygoteLink
from sghost.plugins import PluginRegistry
from sghost.process import oslevel
from sghost.process.pipes import ChildPipes
from sghost.process.spec import META, RESOURCE, ChildSpec

if TYPE_CHECKING:
    from sghost.host.deployments import Deployments

log = logging.getLogger("sghost")
output_log = logging.getLogger("sghost.resource")

META_STOP_TIMEOUT = 5.0
EXIT_OK = 0
EXIT_FAILURE = 1
RUNNERS = {
    RESOURCE: "sghost.process.child:run_child",
    META: "sghost.health.metaresource:run_meta_resource",
    DASHBOARD: DASHBOARD_RUNNER,
}
"""What the zygote runs for each kind of process; named, not imported: the supervisor never loads paho."""


class Supervisor:
    """Runs every resource of one manifest until SIGTERM or SIGINT.

    Its parts: the event loop (:mod:`~sghost.host.loop`) and the zygote link;
    the resource table and its commands (:mod:`~sghost.host.table`); the
    desired-state path (:mod:`~sghost.host.desiredstate`); health sampling
    (:mod:`~sghost.host.sampling`); the broker and the uplink
    (:mod:`~sghost.host.brokerlink`, :mod:`~sghost.host.uplinkstatus`); and the
    followers of the event stream (:mod:`~sghost.host.eventstream`). It serves
    ``reporting.MetaResourceHost`` for the meta-resource and ``control.Controllable``
    for the control socket.
    """

    def __init__(self, config: HostConfig, registry: PluginRegistry) -> None:
        self.registry = registry
        self.stream = EventStream()
        self.loop = EventLoop()
        self.timers: Timers = self.loop.timers
        self.meta_resource: MetaResourceProcess | None = None
        self.control: ControlServer | None = None
        self._stopping = False
        self._meta_stopping = False
        self._done = False
        self._exit_code = EXIT_OK
        self._next_health = 0.0
        self.uplink = UplinkStatus(self.stream) if config.uplink is not None else None
        self.brokers = BrokerLink(self._config)
        self.zygote = ZygoteLink(self.loop, self._process_ended, self._zygote_lost)
        self.table = ResourceTable(
            self._config, self.loop, self.zygote, self.brokers, self.stream,
            broker_reachable=self.broker_reachable, stopping=lambda: self._stopping,
        )
        self.watchers = self.table.watchers
        self.sampler = Sampler(
            self._config, self.watchers, lambda: self.meta_resource, self._uplink_status, self.stream,
        )
        self.desired = DesiredState(
            config, self.table, self.brokers, self.stream,
            restart_meta_resource=self._restart_meta, reopen_file_logs=self.table.reopen_file_logs,
            remote_control_changed=self._log_remote_control,
        )
        self.hooks = HookRunner(config.hooks, config.name, self.timers)
        self.start_plan: StartPlan | None = None
        """Set by ``sghost start`` when deployments are on: the generation this config came from."""
        self.deployments: Deployments | None = None
        self.events = EventFollowers()
        self.dashboard: DashboardProcess | None = None
        self._subscribe_followers()

    def _subscribe_followers(self) -> None:
        """In this order: hooks, Home Assistant, the metrics file, then the meta-resource's topics."""
        self.stream.subscribe(HookFollower(self.hooks, self._config))
        self.stream.subscribe(DiscoveryFollower(self._config, self.registry, lambda: self.meta_resource))
        self.stream.subscribe(MetricsFile(self._config))
        self.stream.subscribe(MetaResourceFeed(
            self.stream, self.timers, lambda: self.meta_resource, self.watchers, self._uplink_status,
            self.sampler.sample, lambda: self.sampler.host_fields,
        ))
        self.stream.subscribe(self.events)
        self.stream.subscribe(self._reconfigure_dashboard)

    @property
    def config(self) -> HostConfig:
        """The desired state running now."""
        return self.desired.config

    def _config(self) -> HostConfig:
        return self.desired.config

    @property
    def logbook(self) -> LogBook:
        return self.table.logbook

    def _uplink_status(self) -> dict[str, Any] | None:
        return self.uplink.status if self.uplink is not None else None

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        """Start everything, serve until asked to stop, stop everything; return the exit code."""
        self.loop.install_signals(self._signal)  # first: a SIGTERM during start-up must still stop cleanly
        for warning in self.config.warnings:
            log.warning("%s", warning)
        try:
            self.control = self._open_control()
            address = self.brokers.start()
        except (BrokerError, ControlError) as error:
            log.error("%s", error)
            if self.control is not None:
                self.control.close()
            return EXIT_FAILURE
        oslevel.release_free_heap()  # what loading and checking the manifest freed (about 0.9 MiB), before the fork
        self.zygote.start(self.registry, RUNNERS)
        self.brokers.deploy_command = self.start_plan is not None
        self.meta_resource = MetaResourceProcess(self, self.brokers.meta_resource_spec(), output_log)
        self.meta_resource.start()
        if self.start_plan is not None:
            from sghost.host.deploymentlink import DeploymentLink  # only with [deploy] on: not carried otherwise

            self.deployments = DeploymentLink(self).start(self.start_plan)
        assert self.control is not None
        self.dashboard = DashboardProcess(
            self, self.config.dashboard, str(self.control.path), self.config.name, output_log, lambda: self._stopping
        )
        self.dashboard.start()
        if self.config.remote_control:
            self._log_remote_control()
        self.desired.apply(self.config)  # the first desired state, onto an empty table
        log.info(
            "sghost %s: host %r, %d resource(s), broker %s:%s",
            __version__, self.config.name, len(self.watchers), _shown_host(address.host), address.port,
        )
        self.sampler.sample()
        self._next_health = time.monotonic() + self.config.health_interval
        self.timers.call_later(TICK, self._tick)
        self._start_systemd_watchdog()
        systemd.ready(f"{len(self.watchers)} resource(s)")
        try:
            self.loop.serve(lambda: self._done, self._after_each_turn)
        finally:
            self._cleanup()
        return self._exit_code

    def request_stop(self) -> None:
        """Stop every resource, then leave the event loop."""
        if self._stopping:
            return
        log.info("stopping %d resource(s)", len(self.watchers))
        systemd.stopping()
        self._stopping = True
        self.stream.publish(HostStopping())
        self.table.order.stop_in_order(list(self.watchers))  # dependents first
        self._finish_if_stopped()

    def _after_each_turn(self) -> None:
        if self._stopping:
            self._finish_if_stopped()
        if self.meta_resource is not None:
            self.meta_resource.flush()  # what this turn queued for it, in one write

    def _signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            log.info("received %s", signal.Signals(signum).name)
            self.request_stop()
        elif signum == signal.SIGHUP:
            log.info("received SIGHUP: reloading %s", self.config.path)
            self.reload()

    def _finish_if_stopped(self) -> None:
        if self._meta_stopping or not self.table.all_stopped():
            return
        for watcher in self.watchers.values():
            if watcher.state != STOPPED:
                watcher.stop()
        self.sampler.sample()
        self._meta_stopping = True
        if self.meta_resource is None:
            self.meta_resource_stopped()
            return
        self.meta_resource.stop()
        self.timers.call_later(META_STOP_TIMEOUT, self._kill_meta)

    def _kill_meta(self) -> None:
        if self.meta_resource is not None and self.meta_resource.pid is not None:
            log.warning("the meta-resource did not stop within %g s: SIGKILL", META_STOP_TIMEOUT)
            oslevel.kill_group(self.meta_resource.pid, signal.SIGKILL)

    def _cleanup(self) -> None:
        self.hooks.close()
        if self.deployments is not None:
            self.deployments.close()
        self.zygote.close()
        self.brokers.stop()
        if self.control is not None:
            self.control.close()
        self.table.logbook.close()
        self.events.close()

    def _open_control(self) -> ControlServer:
        """The local control socket, opened first so that a second sghost for this manifest is refused."""
        control = ControlServer(
            socket_path_for(self.config.path, self.config.runtime_dir), make_handler(self), manifest=self.config.path
        )
        control.open()
        self.loop.register(control, control.handle_ready)
        return control

    def _start_systemd_watchdog(self) -> None:
        """Send WATCHDOG=1 from the event loop itself, so a hung loop stops the pings."""
        interval = systemd.watchdog_interval()
        if interval is None:
            return

        def ping() -> None:
            systemd.watchdog()
            self.timers.call_later(interval, ping)

        ping()

    def _tick(self) -> None:
        now = time.monotonic()
        for watcher in list(self.watchers.values()):
            watcher.check_watchdog(now)
        self.sampler.check_memory(now)
        if now >= self._next_health:
            self._next_health = now + self.config.health_interval
            self.sampler.sample()
        if self.meta_resource is not None:
            self.meta_resource.check()
        if not self._done:
            self.timers.call_later(self._tick_interval(), self._tick)

    def _tick_interval(self) -> float:
        """Check often enough that a hang is caught within a quarter of the smallest watchdog."""
        watchdogs = [w.config.policy.watchdog for w in self.watchers.values() if w.config.policy.watchdog > 0]
        return min([TICK, *(watchdog / 4 for watchdog in watchdogs)])

    def _process_ended(self, pid: int) -> None:
        self.sampler.process_ended(pid)

    def _zygote_lost(self) -> None:
        self._exit_code = EXIT_FAILURE
        self._done = True

    # ------------------------------------------------ reporting.MetaResourceHost

    def spawn(self, owner: ProcessOwner, spec: ChildSpec, fds: list[int]) -> None:
        """Ask the zygote for a process; ``owner`` (a Watcher or the MetaResourceProcess) hears how it went."""
        self.zygote.spawn(owner, spec, fds)

    def watch_pipes(self, pipes: ChildPipes, fds: list[int]) -> None:
        self.loop.watch_pipes(pipes, fds)

    def unwatch_pipe(self, fd: int) -> None:
        self.loop.unwatch_pipe(fd)

    def meta_resource_spawned(self, restarted: bool) -> None:
        """The meta-resource process has its pid; a restarted one knows nothing yet: send it every state."""
        assert self.meta_resource is not None and self.meta_resource.pid is not None
        self.stream.publish(MetaResourceSpawned(self.meta_resource.pid, restarted))

    def meta_resource_stopped(self) -> None:
        """The meta-resource has published presence False and ended: the stop is complete."""
        self._done = True

    def meta_resource_moved(self) -> None:
        """The meta-resource connected to another broker node: the document says which."""
        if self.meta_resource is not None and self.meta_resource.broker is not None:
            self.stream.publish(MetaResourceConnected(self.meta_resource.broker))

    def uplink_changed(self, state: str, queued: int | None, dropped: int | None) -> None:
        """The meta-resource saw the bridge change state, or mosquitto's counters move."""
        if self.uplink is not None:
            self.uplink.reported(state, queued, dropped)

    def broker_reachable(self) -> bool:
        return self.sampler.broker_reachable()

    def _reconfigure_dashboard(self, event: Event) -> None:
        if isinstance(event, DesiredStateApplied) and not event.initial and self.dashboard is not None:
            self.dashboard.reconfigure(event.config.dashboard)

    def deployment_received(self, payload: bytes) -> None:
        """A document arrived on ``command/<host>/deploy`` (offered only with ``[deploy] enabled``)."""
        if self.deployments is not None and not self._stopping:
            self.deployments.received(payload)

    def restart_embedded_broker(self) -> None:
        """Start the embedded broker again with the current ``[uplink]`` (a deployment changed the bridge).

        Resources and the meta-resource keep their processes and reconnect.
        """
        had_uplink = self.uplink is not None
        self.uplink = UplinkStatus(self.stream) if self.config.uplink is not None else None
        self.brokers.restart_embedded()
        if had_uplink != (self.uplink is not None) and self.meta_resource is not None:
            self.meta_resource.restart(self.brokers.meta_resource_spec())  # it watches the bridge's topics, or not
        if self.uplink is not None:
            self.stream.publish(UplinkChanged(self.uplink.status["state"], dict(self.uplink.status)))

    def _log_remote_control(self) -> None:
        if self.config.remote_control:
            log.warning("remote control is on: command/%s/{%s} are obeyed", self.config.name, ",".join(COMMANDS))
        else:
            log.info("remote control is off")

    def _restart_meta(self, withdraw_commands: bool) -> None:
        """Reconnect the meta-resource with the current [broker] and remote_control."""
        if self.meta_resource is None:
            return
        if withdraw_commands:
            # Else the retained announcements would go on offering commands nobody obeys.
            topics = tuple(build_topic(PREFIX_COMMANDAVAILABLE, self.config.name, op) for op in COMMANDS)
            self.stream.publish(CapabilitiesLost(self.config.name, topics))
        self.meta_resource.restart(self.brokers.meta_resource_spec())

    # ------------------------------------------- control.Controllable

    def command(self, op: str, name: str) -> tuple[bool, str]:
        """Start, stop, restart or rebirth one resource (or ``all``); return success and a message."""
        return self.table.command(op, name, self._rebirth_meta)

    def _rebirth_meta(self) -> str | None:
        if self.meta_resource is None:
            return None
        self.meta_resource.rebirth()
        return self.config.name

    def reload(self) -> tuple[bool, str]:
        """Re-read the manifest: start added resources, stop removed ones, restart changed ones.

        Untouched resources keep their processes. A manifest with problems is
        rejected and the running set stays as it was. Plugins are not re-read.
        """
        systemd.reloading()
        try:
            try:
                new = self._load_desired_state()
            except ManifestError as error:
                log.error("reload rejected, nothing changed:\n%s", error)
                return False, f"reload rejected, nothing changed:\n{error}"
            result = self.desired.apply(new)
            log.info("%s", result.message)
            return True, result.message
        finally:
            systemd.ready()

    def _load_desired_state(self) -> HostConfig:
        """The manifest, or with deployments on, the current generation's (read as if it were the ``-c`` file)."""
        generation = self.deployments.current if self.deployments is not None else None
        if generation is None:
            return desiredstate.load(self.config.path, self.registry)
        return desiredstate.load(
            self.config.path,
            self.registry,
            text=generation.manifest_text(),
            types_checked_with_packages=self.brokers.site_dir is not None,
        )

    def rollback(self, generation: int | None) -> tuple[bool, str]:
        """``sghost rollback [GENERATION]``: the same apply and verification as a deployment."""
        if self.deployments is None:
            return False, f"deployments are off in {self.config.path}: expected [deploy] enabled = true"
        return self.deployments.roll_back_to(generation)

    def snapshot(self) -> dict[str, Any]:
        """Everything ``health`` and ``sghost status`` show, and (under ``processes``) what metrics add."""
        return self.sampler.snapshot()

    def status(self) -> dict[str, Any]:
        """What ``sghost status`` shows: the snapshot, with each resource's last stderr line (not sent over MQTT)."""
        document = self.snapshot()
        for name, values in document["resources"].items():
            values["last_stderr"] = self.table.logbook.last_stderr(name)
        return document

    def follow_events(self, sock: socket.socket) -> bool:
        """Stream the host's events to ``sock`` (the dashboard's process follows them)."""
        return self.events.follow(sock)

    def follow_logs(self, sock: socket.socket, resource: str | None) -> bool:
        """Stream every new line of ``resource`` (None: all) to ``sock`` (``sghost logs -f``)."""
        return self.table.logbook.follow(sock, resource)

    def logs(self, resource: str | None, count: int, follow: bool = False) -> tuple[bool, str, list[dict[str, Any]]]:
        """The last ``count`` lines of ``resource`` (None: every resource, interleaved)."""
        logbook = self.table.logbook
        if follow and logbook.followers_full:
            return False, f"{MAX_FOLLOWERS} readers already follow the logs of this host; try again later", []
        if resource is not None and resource not in self.watchers and resource not in logbook.rings:
            known = ", ".join(self.watchers) or "none"
            return False, f"unknown resource {resource!r}; resources of this host: {known}", []
        return True, "", [line.as_dict() for line in logbook.tail(resource, count)]


def _shown_host(host: str | tuple[str, ...]) -> str:
    return host if isinstance(host, str) else "[" + ", ".join(host) + "]"


__all__ = ["RUNNING", "Supervisor"]
