"""The resource table: one Watcher per resource of the desired state, and the commands on them.

The table is what every watcher talks to (``watcher.Host``): it asks the
zygote for processes, keeps each resource's last lines, applies
``depends_on`` at run time, and publishes what happens to a resource on the
host's event stream. It does not report anything itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sghost.config.manifest import HostConfig, ResourceConfig
from sghost.host.brokerlink import COMMANDS, BrokerLink
from sghost.host.eventstream import CapabilitiesLost, EventStream, ResourceForgotten, ResourceStateChanged
from sghost.host.logfiles import log_handler
from sghost.host.logring import LogBook
from sghost.host.loop import EventLoop
from sghost.host.ordering import DependencyOrder
from sghost.host.sampling import resource_snapshot
from sghost.host.timers import Timers
from sghost.host.watcher import BACKOFF, FATAL, STOPPED, Watcher
from sghost.host.zygotelink import ZygoteLink
from sghost.process.pipes import ChildPipes
from sghost.process.spec import ChildSpec

output_log = logging.getLogger("sghost.resource")


class ResourceTable:
    """Every resource's Watcher, by name, in manifest order; serves ``watcher.Host``."""

    def __init__(
        self,
        config: Callable[[], HostConfig],
        loop: EventLoop,
        zygote: ZygoteLink,
        brokers: BrokerLink,
        stream: EventStream,
        broker_reachable: Callable[[], bool],
        stopping: Callable[[], bool],
    ) -> None:
        self.config = config
        self.loop = loop
        self.timers: Timers = loop.timers
        self.zygote = zygote
        self.brokers = brokers
        self.stream = stream
        self._broker_reachable = broker_reachable
        self.stopping = stopping
        self.watchers: dict[str, Watcher] = {}
        self.retiring: set[str] = set()
        """Removed by a reload and still stopping; forgotten once stopped."""
        self.logbook = LogBook()
        self.order = DependencyOrder(self.watchers, stopping)

    # ------------------------------------------------------ watcher.Host

    def spawn(self, watcher: Watcher, spec: ChildSpec, fds: list[int]) -> None:
        self.zygote.spawn(watcher, spec, fds)

    def watch_pipes(self, pipes: ChildPipes, fds: list[int]) -> None:
        self.loop.watch_pipes(pipes, fds)

    def unwatch_pipe(self, fd: int) -> None:
        self.loop.unwatch_pipe(fd)

    def child_spec(self, config: ResourceConfig) -> ChildSpec:
        return self.brokers.child_spec(config)

    def broker_reachable(self) -> bool:
        return self._broker_reachable()

    def unready_dependencies(self, watcher: Watcher) -> list[str]:
        return self.order.unready(watcher)

    def dependency_pids(self, watcher: Watcher) -> dict[str, int | None]:
        return self.order.pids(watcher)

    def output_line(self, watcher: Watcher, stream: str, line: str) -> None:
        self.logbook.add(watcher.name, stream, line)

    def state_changed(self, watcher: Watcher) -> None:
        try:
            retiring = watcher.name in self.retiring
            snapshot = resource_snapshot(watcher)
            self.stream.publish(ResourceStateChanged(watcher.name, snapshot, retiring))
            if retiring:
                self._forget_if_retired(watcher)
        finally:
            self.order.changed(watcher)  # after: a dependency's new state is published before its dependents'

    def capabilities_lost(self, watcher: Watcher, topics: list[str]) -> None:
        self.stream.publish(CapabilitiesLost(watcher.name, tuple(topics)))

    # ---------------------------------------------------------- membership

    def add(self, config: ResourceConfig) -> Watcher:
        watcher = Watcher(config, self, output_log, self._file_log(config.name))
        self.watchers[config.name] = watcher
        self.state_changed(watcher)
        if config.enabled:
            watcher.start()
        return watcher

    def reconfigure(self, name: str, config: ResourceConfig) -> None:
        """Restart ``name`` with a new table (stop it, if now disabled)."""
        watcher = self.watchers[name]
        watcher.reconfigure(config)
        if config.enabled:
            watcher.restart()
        else:
            watcher.stop()

    def retire(self, names: list[str]) -> None:
        """Stop ``names`` (dependents first) and forget each once it is stopped."""
        self.retiring.update(names)
        self.order.stop_in_order(names)
        for name in names:
            watcher = self.watchers.get(name)
            if watcher is not None:  # one without a process (backoff, fatal) was forgotten as it stopped
                self._forget_if_retired(watcher)

    def take_back(self, name: str, config: ResourceConfig) -> None:
        """Add ``name`` again: a new one, or one retired by an earlier reload and still stopping."""
        if name in self.retiring:
            self.retiring.discard(name)
            self.reconfigure(name, config)
        else:
            self.add(config)

    def current(self) -> dict[str, ResourceConfig]:
        """The configuration of every resource that is not on its way out."""
        return {name: w.config for name, w in self.watchers.items() if name not in self.retiring}

    def _forget_if_retired(self, watcher: Watcher) -> None:
        if watcher.name in self.retiring and watcher.state == STOPPED and watcher.pid is None:
            self.retiring.discard(watcher.name)
            del self.watchers[watcher.name]
            self.order.forget(watcher.name)
            self.logbook.forget(watcher.name)
            self.stream.publish(ResourceForgotten(watcher.name))

    # ------------------------------------------------------------ commands

    def command(self, op: str, name: str, rebirth_host: Callable[[], str | None]) -> tuple[bool, str]:
        """Start, stop, restart or rebirth one resource (or ``all``); return success and a message.

        ``rebirth_host()`` asks the meta-resource to publish everything again
        (for ``rebirth all``) and returns its name, or None when it cannot.
        """
        if op not in COMMANDS:
            return False, f"unknown command {op!r}; expected one of {', '.join(COMMANDS)}"
        if self.stopping():
            return False, "sghost is stopping"
        names = list(self.watchers) if name == "all" else [name]
        unknown = [each for each in names if each not in self.watchers]
        if unknown:
            known = ", ".join(self.watchers) or "none"
            return False, f"unknown resource {unknown[0]!r}; resources of this host: {known}, or all"
        if op == "rebirth":
            return self._rebirth(name, rebirth_host)
        if op == "stop" and name == "all":
            self.order.stop_in_order(names)  # dependents first
        else:
            for each in names:
                self._apply(op, self.watchers[each])
        return True, f"{op}: {', '.join(names) or 'no resources'}"

    def _rebirth(self, name: str, rebirth_host: Callable[[], str | None]) -> tuple[bool, str]:
        names = list(self.watchers) if name == "all" else [name]
        asked = [each for each in names if self.watchers[each].rebirth()]
        if name == "all" and (host := rebirth_host()) is not None:
            asked.append(host)
        if not asked:
            return False, f"rebirth: {name} has no running process"
        return True, f"rebirth: {', '.join(asked)}"

    @staticmethod
    def _apply(op: str, watcher: Watcher) -> None:
        if op == "stop":
            watcher.stop()
        elif op == "restart" or watcher.state in (FATAL, BACKOFF):
            watcher.restart()
        else:
            watcher.start()

    def all_stopped(self) -> bool:
        return all(w.pid is None and w.state in (STOPPED, FATAL) for w in self.watchers.values())

    # ----------------------------------------------------------- log files

    def reopen_file_logs(self) -> None:
        """Apply new log settings: close every resource's log file and open it as now configured."""
        for name, watcher in self.watchers.items():
            logger = logging.getLogger(f"sghost.files.{name}")
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
                handler.close()
            watcher.file_log = self._file_log(name)

    def _file_log(self, name: str) -> logging.Logger | None:
        """A size-bounded log file per resource when ``[host] log_dir`` is set."""
        config = self.config()
        if config.log_dir is None:
            return None
        logger = logging.getLogger(f"sghost.files.{name}")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        if not logger.handlers:
            config.log_dir.mkdir(parents=True, exist_ok=True)
            resource = config.resources.get(name)
            handler = log_handler(
                config.log_dir / f"{name}.log",
                resource.user if resource else None,
                resource.group if resource else None,
                maxBytes=config.log_max_bytes,
                backupCount=config.log_backups,
            )
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            logger.addHandler(handler)
        return logger
