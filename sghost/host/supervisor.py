"""The supervisor: one event loop that runs the host's resources and reports their health.

Data flows one way: validated config -> watchers (one per resource) ->
processes (forked by the zygote) -> events -> health topics. The supervisor
has no threads and does not load paho: the meta-resource that publishes the
health runs in a process of its own (sghost.health, sghost.metaresource).
"""

from __future__ import annotations

import dataclasses
import logging
import logging.handlers
import os
import selectors
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any

import psutil

from sgframework.constants import PREFIX_COMMANDAVAILABLE
from sgframework.topics import build_topic
from sghost import __version__
from sghost.config.checked import load_checked
from sghost.config.manifest import BrokerConfig, HostConfig, ManifestError, ResourceConfig
from sghost.config.reloadplan import plan_reload
from sghost.health import metrics
from sghost.health.reporting import MetaProcess
from sghost.host import systemd, uplinkbridge
from sghost.host.broker import BrokerError, EmbeddedBroker
from sghost.host.control import ControlError, ControlServer, make_handler, socket_path_for
from sghost.host.dashboardprocess import ROLE as DASHBOARD
from sghost.host.dashboardprocess import RUNNER as DASHBOARD_RUNNER
from sghost.host.dashboardprocess import DashboardProcess
from sghost.host.eventfollowers import EventFollowers
from sghost.host.hooks import HookRunner
from sghost.host.logfiles import log_handler
from sghost.host.logring import MAX_FOLLOWERS, LogBook
from sghost.host.ordering import DependencyOrder
from sghost.host.timers import Timers
from sghost.host.watcher import BACKOFF, FATAL, RUNNING, STOPPED, WAITING, Watcher
from sghost.plugins import PluginRegistry
from sghost.process import oslevel, zygote
from sghost.process.pipes import ChildPipes
from sghost.process.spec import META, RESOURCE, ChildSpec

log = logging.getLogger("sghost")
output_log = logging.getLogger("sghost.resource")

TICK = 1.0
COMMANDS = ("start", "stop", "restart", "rebirth")
META_STOP_TIMEOUT = 5.0
STATE_FIELDS = ("state", "restarts", "pid", "error", "waiting_for")
"""Published the moment they change; cpu, memory and uptime every health_interval."""
DOCUMENT_DELAY = 0.05
"""Seconds by which state changes are gathered into one new ``health`` document."""
SAMPLED_FIELDS = ("uptime", "cpu", "memory")
DOCUMENT_ONLY = ("connected", "queued", "broker")
"""In a resource's entry of the health document, but not published as ``<res>_<field>`` topics."""
UPLINK_DROP_WARNING_INTERVAL = 60.0
"""Seconds between warnings about messages the uplink's queue bound dropped."""
EXIT_OK = 0
EXIT_FAILURE = 1
RUNNERS = {
    RESOURCE: "sghost.process.child:run_child",
    META: "sghost.health.metaresource:run_meta",
    DASHBOARD: DASHBOARD_RUNNER,
}
"""What the zygote runs for each kind of process; named, not imported: the supervisor never loads paho."""


@dataclass(frozen=True)
class BrokerAddress:
    host: str | tuple[str, ...]
    port: int
    protocol: str


class Supervisor:
    """Runs every resource of one manifest until SIGTERM or SIGINT."""

    def __init__(self, config: HostConfig, registry: PluginRegistry) -> None:
        self.config = config
        self.registry = registry
        self.timers = Timers()
        self.selector = selectors.DefaultSelector()
        self.watchers: dict[str, Watcher] = {}
        self.started_at = time.monotonic()
        self._pipe_owner: dict[int, ChildPipes] = {}
        self._tokens: dict[int, Any] = {}
        self._pids: dict[int, Any] = {}
        self._next_token = 0
        self._stopping = False
        self._meta_stopping = False
        self._done = False
        self._exit_code = EXIT_OK
        self._broker: EmbeddedBroker | None = None
        self._address: BrokerAddress | None = None
        self._zygote_pid = 0
        self._zygote_sock: socket.socket | None = None
        self._signal_r = -1
        self.health: MetaProcess | None = None
        self._processes: dict[int, psutil.Process] = {}
        self._next_health = 0.0
        self._next_memory_check = 0.0
        self._document: dict[str, Any] | None = None
        self._document_due = False
        self._retiring: set[str] = set()
        self.control: ControlServer | None = None
        self.logbook = LogBook()
        self.events = EventFollowers()
        self.dashboard: DashboardProcess | None = None
        self.order = DependencyOrder(self.watchers, lambda: self._stopping)
        self._metrics_error: str | None = None
        self._discovery_on = False
        self.hooks = HookRunner(config.hooks, config.name, self.timers)
        self._uplink: dict[str, Any] | None = None
        if config.uplink is not None:
            self._uplink = {"state": "disconnected", "since": round(time.time()), "queued": None, "dropped": 0}
        self._uplink_drop_warned = 0.0

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        """Start everything, serve until asked to stop, stop everything; return the exit code."""
        self._install_signals()  # first: a SIGTERM during start-up must still stop cleanly
        for warning in self.config.warnings:
            log.warning("%s", warning)
        try:
            self.control = self._open_control()
            self._address = self._start_broker()
        except (BrokerError, ControlError) as error:
            log.error("%s", error)
            if self.control is not None:
                self.control.close()
            return EXIT_FAILURE
        self._zygote_pid, self._zygote_sock = zygote.start_zygote(self.registry, RUNNERS)
        self.selector.register(self._zygote_sock, selectors.EVENT_READ, ("zygote", None))
        self.health = MetaProcess(self, self._spec_for_host(), output_log)
        self.health.start()
        self.dashboard = DashboardProcess(
            self, self.config.dashboard, str(self.control.path), self.config.name, output_log, lambda: self._stopping
        )
        self.dashboard.start()
        if self.config.remote_control:
            self._log_remote_control()
        for config in self.config.resources.values():
            self._add_watcher(config)
        log.info(
            "sghost %s: host %r, %d resource(s), broker %s:%s",
            __version__, self.config.name, len(self.watchers), _shown_host(self._address.host), self._address.port,
        )
        self._publish_all()
        self._next_health = time.monotonic() + self.config.health_interval
        self.timers.call_later(TICK, self._tick)
        self._start_systemd_watchdog()
        systemd.ready(f"{len(self.watchers)} resource(s)")
        try:
            self._serve()
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
        self.order.stop_in_order(list(self.watchers))  # dependents first
        self._finish_if_stopped()

    def _serve(self) -> None:
        while not self._done:
            timeout = self.timers.next_delay(TICK)
            for key, _mask in self.selector.select(timeout):
                kind, owner = key.data
                if kind == "pipe":
                    owner.read(key.fd)
                elif kind == "zygote":
                    self._read_zygote()
                elif kind == "signal":
                    self._read_signals()
                elif kind == "control" and self.control is not None:
                    self.control.handle_ready()
            self.timers.run_due()
            if self._stopping:
                self._finish_if_stopped()

    def _finish_if_stopped(self) -> None:
        if self._meta_stopping:
            return
        if all(watcher.pid is None and watcher.state in (STOPPED, FATAL) for watcher in self.watchers.values()):
            for watcher in self.watchers.values():
                if watcher.state != STOPPED:
                    watcher.stop()
            self._publish_all()
            self._meta_stopping = True
            if self.health is None:
                self.meta_stopped()
                return
            self.health.stop()
            self.timers.call_later(META_STOP_TIMEOUT, self._kill_meta)

    def _kill_meta(self) -> None:
        if self.health is not None and self.health.pid is not None:
            log.warning("the meta-resource did not stop within %g s: SIGKILL", META_STOP_TIMEOUT)
            oslevel.kill_group(self.health.pid, signal.SIGKILL)

    def meta_stopped(self) -> None:
        """The meta-resource has published presence False and ended: the stop is complete."""
        self._done = True

    def meta_spawned(self, restarted: bool) -> None:
        """The meta-resource process has its pid; a restarted one knows nothing yet: send it every state."""
        self._configure_discovery()
        if not restarted:
            self._publish_document_soon()  # the document now has a meta_pid
            return
        for watcher in self.watchers.values():
            self.state_changed(watcher)
        self._publish_all()

    def _cleanup(self) -> None:
        self.hooks.close()
        if self._zygote_sock is not None:
            self._zygote_sock.close()
            self._zygote_sock = None
        if self._zygote_pid:
            _wait_for_exit(self._zygote_pid, 3.0)
        if self._broker is not None:
            self._broker.stop()
        if self.control is not None:
            self.control.close()
        self.logbook.close()
        self.events.close()

    def _open_control(self) -> ControlServer:
        """The local control socket, opened first so that a second sghost for this manifest is refused."""
        control = ControlServer(
            socket_path_for(self.config.path, self.config.runtime_dir), make_handler(self), manifest=self.config.path
        )
        control.open()
        self.selector.register(control, selectors.EVENT_READ, ("control", None))
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

    # -------------------------------------------------------------- broker

    def _log_remote_control(self) -> None:
        if self.config.remote_control:
            log.warning("remote control is on: command/%s/{%s} are obeyed", self.config.name, ",".join(COMMANDS))
        else:
            log.info("remote control is off")

    def _start_broker(self) -> BrokerAddress:
        broker = self.config.broker
        if broker.embedded:
            self._broker = EmbeddedBroker(broker.port, workdir=None, extra_config=self._uplink_lines())
            self._broker.start()
            log.info("embedded broker (%s) on %s:%d", self._broker.kind, self._broker.host, self._broker.port)
        return self._address_for(broker)

    def _uplink_lines(self) -> list[str]:
        if self.config.uplink is None:
            return []
        uplink = self.config.uplink
        log.info(
            "uplink to %s under %s (queued in %s)",
            ", ".join(f"{h}:{p}" for h, p in uplink.addresses), uplink.remote_prefix, uplink.state_dir,
        )
        return uplinkbridge.config_lines(uplink, self.config.name)

    def _address_for(self, broker: BrokerConfig) -> BrokerAddress:
        """Where resources connect: the manifest's broker, or the embedded one (amqtt speaks MQTT 3.1.1 only)."""
        if not broker.embedded or self._broker is None:
            return BrokerAddress(broker.host, broker.port, broker.protocol)
        protocol = broker.protocol if self._broker.kind == "mosquitto" else "MQTTv311"
        return BrokerAddress(self._broker.host, self._broker.port, protocol)

    def _spec_for_host(self) -> ChildSpec:
        spec = self._spec(self.config.name, "", {}, self.config.broker.certificate_directory)
        commands = COMMANDS if self.config.remote_control else ()
        uplink_topics: tuple[str, ...] = ()
        if self._uplink is not None:
            uplink_topics = (uplinkbridge.state_topic(self.config.name), *uplinkbridge.SYS_QUEUED_TOPICS)
        return dataclasses.replace(spec, role=META, commands=commands, uplink_topics=uplink_topics)

    def child_spec(self, config: ResourceConfig) -> ChildSpec:
        certificates = config.certificate_directory or self.config.broker.certificate_directory
        spec = self._spec(config.name, config.type, dict(config.settings), certificates)
        return dataclasses.replace(
            spec, watchdog=config.policy.watchdog, environment=dict(config.environment),
            user=config.user, group=config.group,
        )

    def _spec(self, name: str, type_name: str, settings: dict[str, Any], certificates: Any) -> ChildSpec:
        broker = self.config.broker
        assert self._address is not None
        return ChildSpec(
            name=name,
            type_name=type_name,
            settings=settings,
            host=self._address.host,
            port=self._address.port,
            certificate_directory=str(certificates) if certificates else None,
            protocol=self._address.protocol,
            qos=broker.qos,
            keepalive=broker.keepalive,
            username=broker.username,
            password=broker.read_password(),
            tls_insecure=broker.tls_insecure,
            base_directory=str(self.config.path.parent),
        )

    def unready_dependencies(self, watcher: Watcher) -> list[str]:
        return self.order.unready(watcher)

    def dependency_pids(self, watcher: Watcher) -> dict[str, int | None]:
        return self.order.pids(watcher)

    def output_line(self, watcher: Watcher, stream: str, line: str) -> None:
        self.logbook.add(watcher.name, stream, line)

    def meta_moved(self) -> None:
        """The meta-resource connected to another broker node: the document says which."""
        self._publish_document_soon()

    def uplink_changed(self, state: str, queued: int | None, dropped: int | None) -> None:
        """The meta-resource saw the bridge change state, or mosquitto's counters move."""
        uplink = self._uplink
        if uplink is None:
            return
        if state != uplink["state"]:
            log.log(logging.INFO if state == "connected" else logging.WARNING, "uplink %s", state)
            uplink.update(state=state, since=round(time.time()))
            self._publish_document_soon()
        if dropped is not None and dropped > (uplink["dropped"] or 0):
            now = time.monotonic()
            if now - self._uplink_drop_warned >= UPLINK_DROP_WARNING_INTERVAL:
                self._uplink_drop_warned = now
                log.warning(
                    "uplink: the embedded broker has dropped %d message(s) at its queue bound "
                    "([uplink] max_queued_messages / max_queued_bytes)", dropped,
                )
        uplink.update(queued=queued, dropped=dropped if dropped is not None else uplink["dropped"])

    def broker_reachable(self) -> bool:
        return self.health is not None and self.health.is_connected()

    # ------------------------------------------------------------- watchers

    def _add_watcher(self, config: ResourceConfig) -> Watcher:
        watcher = Watcher(config, self, output_log, self._file_log(config.name))
        self.watchers[config.name] = watcher
        self.state_changed(watcher)
        if config.enabled:
            watcher.start()
        return watcher

    def _reopen_file_logs(self) -> None:
        """Apply new log settings: close every resource's log file and open it as now configured."""
        for name, watcher in self.watchers.items():
            logger = logging.getLogger(f"sghost.files.{name}")
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
                handler.close()
            watcher.file_log = self._file_log(name)

    def _file_log(self, name: str) -> logging.Logger | None:
        """A size-bounded log file per resource when ``[host] log_dir`` is set."""
        if self.config.log_dir is None:
            return None
        logger = logging.getLogger(f"sghost.files.{name}")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        if not logger.handlers:
            self.config.log_dir.mkdir(parents=True, exist_ok=True)
            resource = self.config.resources.get(name)
            handler = log_handler(
                self.config.log_dir / f"{name}.log",
                resource.user if resource else None,
                resource.group if resource else None,
                maxBytes=self.config.log_max_bytes,
                backupCount=self.config.log_backups,
            )
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            logger.addHandler(handler)
        return logger

    def spawn(self, owner: Any, spec: ChildSpec, fds: list[int]) -> None:
        """Ask the zygote for a process; ``owner`` (a Watcher or the MetaProcess) hears how it went."""
        assert self._zygote_sock is not None
        self._next_token += 1
        self._tokens[self._next_token] = owner
        zygote.send_packet(self._zygote_sock, {"op": "spawn", "token": self._next_token, "spec": spec}, fds)

    def watch_pipes(self, pipes: ChildPipes, fds: list[int]) -> None:
        for fd in fds:
            self._pipe_owner[fd] = pipes
            self.selector.register(fd, selectors.EVENT_READ, ("pipe", pipes))

    def unwatch_pipe(self, fd: int) -> None:
        if self._pipe_owner.pop(fd, None) is not None:
            self.selector.unregister(fd)


    def _read_zygote(self) -> None:
        assert self._zygote_sock is not None
        try:
            message, fds = zygote.receive_packet(self._zygote_sock)
        except OSError:
            message, fds = None, []
        for fd in fds:
            os.close(fd)
        if message is None:
            self._zygote_lost()
            return
        op = message["op"]
        if op == "spawned":
            owner = self._tokens.pop(message["token"])
            self._pids[message["pid"]] = owner
            owner.spawned(message["pid"])
        elif op == "spawn_failed":
            self._tokens.pop(message["token"]).spawn_failed(message["error"])
        elif op == "exited":
            owner = self._pids.pop(message["pid"], None)
            self._processes.pop(message["pid"], None)
            if owner is not None:
                owner.exited(message["status"])

    def _zygote_lost(self) -> None:
        log.error("the zygote (pid %d) is gone; its resources died with it: sghost exits", self._zygote_pid)
        if self._zygote_sock is not None:
            self.selector.unregister(self._zygote_sock)
        self._exit_code = EXIT_FAILURE
        self._done = True

    # ------------------------------------------------------------- signals

    def _install_signals(self) -> None:
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        signal.set_wakeup_fd(write_end)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda *_: None)
        self._signal_r = read_end
        self.selector.register(read_end, selectors.EVENT_READ, ("signal", None))

    def _read_signals(self) -> None:
        try:
            received = os.read(self._signal_r, 512)
        except BlockingIOError:
            return
        for signum in received:
            if signum in (signal.SIGTERM, signal.SIGINT):
                log.info("received %s", signal.Signals(signum).name)
                self.request_stop()
            elif signum == signal.SIGHUP:
                log.info("received SIGHUP: reloading %s", self.config.path)
                self.reload()

    # ------------------------------------------------------------ commands

    def command(self, op: str, name: str) -> tuple[bool, str]:
        """Start, stop or restart one resource (or ``all``); return success and a message."""
        if op not in COMMANDS:
            return False, f"unknown command {op!r}; expected one of {', '.join(COMMANDS)}"
        if self._stopping:
            return False, "sghost is stopping"
        names = list(self.watchers) if name == "all" else [name]
        unknown = [each for each in names if each not in self.watchers]
        if unknown:
            known = ", ".join(self.watchers) or "none"
            return False, f"unknown resource {unknown[0]!r}; resources of this host: {known}, or all"
        if op == "rebirth":
            return self.rebirth(name)
        if op == "stop" and name == "all":
            self.order.stop_in_order(names)  # dependents first
        else:
            for each in names:
                self._apply(op, self.watchers[each])
        return True, f"{op}: {', '.join(names) or 'no resources'}"

    def rebirth(self, name: str) -> tuple[bool, str]:
        """Have a resource (or ``all``, with the meta-resource's health) publish everything again."""
        names = list(self.watchers) if name == "all" else [name]
        asked = [each for each in names if self.watchers[each].rebirth()]
        if name == "all" and self.health is not None:
            self.health.rebirth()
            asked.append(self.config.name)
        if not asked:
            return False, f"rebirth: {name} has no running process"
        return True, f"rebirth: {', '.join(asked)}"

    def _apply(self, op: str, watcher: Watcher) -> None:
        if op == "stop":
            watcher.stop()
        elif op == "restart" or watcher.state in (FATAL, BACKOFF):
            watcher.restart()
        else:
            watcher.start()

    def reload(self) -> tuple[bool, str]:
        """Re-read the manifest: start added resources, stop removed ones, restart changed ones.

        Untouched resources keep their processes. A manifest with problems is
        rejected and the running set stays as it was. Plugins are not re-read.
        """
        systemd.reloading()
        try:
            return self._reload()
        finally:
            systemd.ready()

    def _reload(self) -> tuple[bool, str]:

        try:
            new = load_checked(str(self.config.path), self.registry, strict_types=False)
        except ManifestError as error:
            log.error("reload rejected, nothing changed:\n%s", error)
            return False, f"reload rejected, nothing changed:\n{error}"
        current = {name: w.config for name, w in self.watchers.items() if name not in self._retiring}
        plan = plan_reload(self.config, new, current)
        for line in plan.deferred:
            log.warning("reload: %s", line)
        remote_control_changed = plan.config.remote_control != self.config.remote_control
        self.config = plan.config
        self.hooks.config = plan.config.hooks
        if remote_control_changed:
            self._log_remote_control()
        self._address = self._address_for(plan.config.broker)
        if plan.reopen_logs:
            self._reopen_file_logs()
        for name in plan.removed:
            self._retiring.add(name)
        self.order.stop_in_order(plan.removed)  # dependents first
        for name in plan.removed:
            self._forget_if_retired(self.watchers[name])
        for name in plan.changed:
            self._reconfigure(self.watchers[name], plan.config.resources[name])
        for name in plan.added:
            if name in self._retiring:  # removed by an earlier reload and still stopping: take it back
                self._retiring.discard(name)
                self._reconfigure(self.watchers[name], plan.config.resources[name])
            else:
                self._add_watcher(plan.config.resources[name])
        self._configure_discovery()
        if self.dashboard is not None:
            self.dashboard.reconfigure(plan.config.dashboard)
        if plan.restart_meta:
            self._restart_meta(withdraw_commands=remote_control_changed and not self.config.remote_control)
        self.order.release_waiting()  # a changed depends_on may free a waiting resource
        untouched = len(plan.config.resources) - len(plan.added) - len(plan.changed)
        message = (
            f"reloaded {self.config.path}: {len(plan.added)} added, {len(plan.removed)} removed, "
            f"{len(plan.changed)} restarted, {untouched} untouched"
        )
        if plan.restart_meta:
            message += f"; {self.config.name} reconnects with the new settings"
        log.info("%s", message)
        return True, message

    def _configure_discovery(self) -> None:
        """Tell the meta-resource what Home Assistant discovery covers now (only when on, or just turned off)."""
        settings = self.config.homeassistant
        if self.health is None or not (settings.discovery or self._discovery_on):
            return
        self._discovery_on = settings.discovery
        types = self.registry.types
        versions = {info.name: info.version or "" for info in self.registry.plugins}
        resources = {
            name: {
                "type_name": config.type,
                "version": versions.get(types[config.type].plugin, "") if config.type in types else "",
            }
            for name, config in self.config.resources.items()
        }
        self.health.homeassistant({
            "discovery": settings.discovery, "prefix": settings.prefix, "version": __version__,
            "remote_control": self.config.remote_control, "resources": resources,
        })

    def _restart_meta(self, withdraw_commands: bool) -> None:
        """Reconnect the meta-resource with the current [broker] and remote_control."""
        if self.health is None:
            return
        if withdraw_commands:
            # Else the retained announcements would go on offering commands nobody obeys.
            topics = [build_topic(PREFIX_COMMANDAVAILABLE, self.config.name, op) for op in COMMANDS]
            self.health.capabilities_lost(topics)
        self.health.restart(self._spec_for_host())

    def _reconfigure(self, watcher: Watcher, config: ResourceConfig) -> None:
        watcher.reconfigure(config)
        if config.enabled:
            watcher.restart()
        else:
            watcher.stop()

    def _forget_if_retired(self, watcher: Watcher) -> None:
        if watcher.name in self._retiring and watcher.state == STOPPED and watcher.pid is None:
            self._retiring.discard(watcher.name)
            del self.watchers[watcher.name]
            self.order.forget(watcher.name)
            self.logbook.forget(watcher.name)
            self.hooks.forget(watcher.name)
            if self.health is not None:
                self.health.forget(watcher.name)

    # -------------------------------------------------------------- health

    def state_changed(self, watcher: Watcher) -> None:
        try:
            self._report_state(watcher)
        finally:
            self.order.changed(watcher)  # after: a dependency's new state is published before its dependents'

    def _report_state(self, watcher: Watcher) -> None:
        self.hooks.state_changed(watcher.name, watcher.state, watcher.last_error, watcher.restarts)
        self.events.state_changed(watcher.name, self.resource_snapshot(watcher, with_stats=False))
        if self.health is None:
            return
        if watcher.name in self._retiring:
            self._forget_if_retired(watcher)
            return
        fields = health_fields(self.resource_snapshot(watcher, with_stats=False))
        self.health.update(watcher.name, {key: fields[key] for key in STATE_FIELDS})
        self._publish_document_soon()

    def _publish_document_soon(self) -> None:
        """Gather the state changes of the next moment into one new ``health`` document."""
        if not self._document_due:
            self._document_due = True
            self.timers.call_later(DOCUMENT_DELAY, self._publish_document)

    def _publish_document(self) -> None:
        """Publish the last document with current states; CPU and memory stay as last sampled.

        Sampling here would shorten psutil's CPU window to the time since the
        last state change, so only ``_publish_all`` samples.
        """
        self._document_due = False
        if self.health is None or self._document is None:
            return
        sampled = self._document["resources"]
        resources = {}
        for name, watcher in self.watchers.items():
            values = self.resource_snapshot(watcher, with_stats=False)
            before = sampled.get(name)
            if before is not None and before["pid"] == values["pid"] and values["pid"] is not None:
                values.update({key: before[key] for key in SAMPLED_FIELDS})
            resources[name] = values
        document = {
            **self._document,
            "meta_pid": self.health.pid,
            "broker_connected": self.broker_reachable(),
            "broker": self.health.broker,
            "resources": resources,
        }
        if self._uplink is not None:
            document["uplink"] = dict(self._uplink)
        self._document = document
        self.health.publish_health(document)

    def capabilities_lost(self, watcher: Watcher, topics: list[str]) -> None:
        if self.health is not None:
            self.health.capabilities_lost(topics)

    def _tick(self) -> None:
        now = time.monotonic()
        check_memory = now >= self._next_memory_check
        if check_memory:
            self._next_memory_check = now + TICK
        for watcher in self.watchers.values():
            watcher.check_watchdog(now)
            if check_memory and watcher.config.policy.max_memory_mb > 0 and watcher.pid is not None:
                stats = self._stats(watcher)
                if stats is not None:
                    watcher.check_memory(stats[1])
        if now >= self._next_health:
            self._next_health = now + self.config.health_interval
            self._publish_all()
        if self.health is not None:
            self.health.check()
        if not self._done:
            self.timers.call_later(self._tick_interval(), self._tick)

    def _tick_interval(self) -> float:
        """Check often enough that a hang is caught within a quarter of the smallest watchdog."""
        watchdogs = [w.config.policy.watchdog for w in self.watchers.values() if w.config.policy.watchdog > 0]
        return min([TICK, *(watchdog / 4 for watchdog in watchdogs)])

    def _stats(self, watcher: Watcher) -> tuple[float, float] | None:
        """CPU (% of one core since last call) and resident memory (MiB) of a resource's process."""
        if watcher.pid is None:
            return None
        process = self._processes.get(watcher.pid)
        try:
            if process is None:
                process = self._processes[watcher.pid] = psutil.Process(watcher.pid)
                process.cpu_percent(None)
            return process.cpu_percent(None), process.memory_info().rss / 1048576
        except psutil.Error:
            return None

    def resource_snapshot(self, watcher: Watcher, with_stats: bool = True) -> dict[str, Any]:
        stats = self._stats(watcher) if with_stats and watcher.pid is not None else None
        cpu, memory = stats if stats is not None else (0.0, 0.0)
        return {
            "state": watcher.state,
            "restarts": watcher.restarts,
            "pid": watcher.pid,
            "uptime": round(watcher.uptime()),
            "cpu": round(cpu, 1),
            "memory": round(memory, 1),
            "error": watcher.last_error,
            "dropped": watcher.counted("dropped"),
            "refused": watcher.counted("refused"),
            "queued": watcher.queued,
            "connected": watcher.connected,
            "waiting_for": list(watcher.waiting_for) if watcher.state == WAITING else [],
            "broker": watcher.broker,
        }

    def snapshot(self) -> dict[str, Any]:
        """Everything ``health`` and ``sghost status`` show, and (under ``processes``) what metrics add."""
        memory = psutil.virtual_memory()
        document = {
            "host": self.config.name,
            "version": __version__,
            "pid": os.getpid(),
            "meta_pid": self.health.pid if self.health is not None else None,
            "manifest": str(self.config.path),
            "uptime": round(time.monotonic() - self.started_at),
            "cpu": psutil.cpu_percent(None),
            "memory": round(memory.percent, 1),
            "memory_available_mb": round(memory.available / 1048576),
            "broker_connected": self.broker_reachable(),
            "broker": self.health.broker if self.health is not None else None,
            "resources": {name: self.resource_snapshot(w) for name, w in self.watchers.items()},
            **({"uplink": dict(self._uplink)} if self._uplink is not None else {}),
        }
        document[metrics.PROCESSES] = {
            name: figures for name, w in self.watchers.items() if (figures := self._process_figures(w)) is not None
        }
        return document

    def _process_figures(self, watcher: Watcher) -> dict[str, float] | None:
        """Cumulative CPU seconds, resident bytes and start time (Unix) of a resource's process."""
        process = self._processes.get(watcher.pid) if watcher.pid is not None else None
        if process is None:
            return None
        try:
            with process.oneshot():
                times = process.cpu_times()
                return {
                    "cpu_seconds": times.user + times.system,
                    "memory_bytes": process.memory_info().rss,
                    "start_time": process.create_time(),
                }
        except psutil.Error:
            return None

    def _write_metrics(self, document: dict[str, Any]) -> None:
        path = self.config.metrics.textfile
        if path is None:
            return
        try:
            metrics.write_atomically(path, metrics.render(document))
        except OSError as error:
            message = f"cannot write the metrics file {path}: {error.strerror or error}"
            if message != self._metrics_error:
                log.warning("%s; retrying every health_interval", message)
            self._metrics_error = message
            return
        if self._metrics_error is not None:
            log.info("metrics file %s written again", path)
        self._metrics_error = None

    def status(self) -> dict[str, Any]:
        """What ``sghost status`` shows: the snapshot, with each resource's last stderr line (not sent over MQTT)."""
        document = self.snapshot()
        for name, values in document["resources"].items():
            values["last_stderr"] = self.logbook.last_stderr(name)
        return document

    def follow_logs(self, sock: socket.socket, resource: str | None) -> bool:
        """Stream every new line of ``resource`` (None: all) to ``sock`` (``sghost logs -f``)."""
        return self.logbook.follow(sock, resource)

    def follow_events(self, sock: socket.socket) -> bool:
        """Stream the host's changes to ``sock`` (the dashboard's process follows them)."""
        return self.events.follow(sock)

    def logs(self, resource: str | None, count: int, follow: bool = False) -> tuple[bool, str, list[dict[str, Any]]]:
        """The last ``count`` lines of ``resource`` (None: every resource, interleaved)."""
        if follow and self.logbook.followers_full:
            return False, f"{MAX_FOLLOWERS} readers already follow the logs of this host; try again later", []
        if resource is not None and resource not in self.watchers and resource not in self.logbook.rings:
            known = ", ".join(self.watchers) or "none"
            return False, f"unknown resource {resource!r}; resources of this host: {known}", []
        return True, "", [line.as_dict() for line in self.logbook.tail(resource, count)]

    def _publish_all(self) -> None:
        document = self.snapshot()
        self._write_metrics(document)
        del document[metrics.PROCESSES]  # not part of the health document: it would change at every sample
        if self.health is None:
            return
        for name, values in document["resources"].items():
            shown = self.health.update(name, health_fields(values))
            values.update({key: shown[key] for key in SAMPLED_FIELDS})
        for key in ("uptime", "cpu", "memory", "memory_available_mb"):
            document[key] = self.health.report(f"host.{key}", document[key])
        self._document = document
        self.health.publish_health(document)


def health_fields(values: dict[str, Any]) -> dict[str, Any]:
    """One resource's values as its ``<res>_<field>`` topics carry them.

    A retained empty payload would delete the topic, so "no process" is pid
    ``0`` and "no error" is ``none``.
    """
    fields = {key: values[key] for key in values if key not in DOCUMENT_ONLY}
    fields["pid"] = values["pid"] or 0
    fields["error"] = values["error"] or "none"
    fields["waiting_for"] = ",".join(values.get("waiting_for") or []) or "none"
    return fields


def _shown_host(host: str | tuple[str, ...]) -> str:
    return host if isinstance(host, str) else "[" + ", ".join(host) + "]"


def _wait_for_exit(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        finished, _status = os.waitpid(pid, os.WNOHANG)
        if finished:
            return
        time.sleep(0.01)  # the zygote is stopping its children; it has no pipe to wait on
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


__all__ = ["RUNNING", "Supervisor"]
