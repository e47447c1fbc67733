"""Health sampling: each resource's CPU and memory (read from /proc), the host's, and the snapshot that carries them.

``snapshot()`` is what ``sghost status`` shows and what the health document,
the metrics textfile and the dashboard are made from. :meth:`Sampler.sample`
takes one and publishes it as :class:`HealthSampled` on the event stream.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from sghost import __version__
from sghost.config.manifest import HostConfig
from sghost.health import metrics
from sghost.host.eventstream import EventStream, HealthSampled
from sghost.host.procstat import HostCpu, ProcessStat, host_memory
from sghost.host.watcher import WAITING, Watcher

MEMORY_CHECK_INTERVAL = 1.0
"""Seconds between checks of the resources that have a ``max_memory_mb``."""


class MetaResourceView(Protocol):
    """What the snapshot shows of the meta-resource."""

    pid: int | None
    broker: str | None

    def is_connected(self) -> bool: ...


def resource_snapshot(watcher: Watcher, stats: tuple[float, float] | None = None) -> dict[str, Any]:
    """One resource's values; ``stats`` is its sampled (CPU %, memory MiB), else both read 0."""
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


class Sampler:
    """Samples the resources' processes (one :class:`ProcessStat` kept per pid for its CPU window)."""

    def __init__(
        self,
        config: Callable[[], HostConfig],
        watchers: Mapping[str, Watcher],
        meta_resource: Callable[[], MetaResourceView | None],
        uplink: Callable[[], Mapping[str, Any] | None],
        stream: EventStream,
    ) -> None:
        self.config = config
        self.watchers = watchers
        self.meta_resource = meta_resource
        self.uplink = uplink
        self.stream = stream
        self.started_at = time.monotonic()
        self._processes: dict[int, ProcessStat] = {}
        self._host_cpu = HostCpu()
        self._next_memory_check = 0.0
        self.host_fields: dict[str, Any] = {}
        """Host-wide entries other parts keep in the snapshot (``deploy_rejected`` with deployments on)."""

    def process_ended(self, pid: int) -> None:
        self._processes.pop(pid, None)

    def stats(self, watcher: Watcher) -> tuple[float, float] | None:
        """CPU (% of one core since last call) and resident memory (MiB) of a resource's process."""
        if watcher.pid is None:
            return None
        process = self._processes.get(watcher.pid)
        try:
            if process is None:
                process = self._processes[watcher.pid] = ProcessStat(watcher.pid)
                process.cpu_percent()
            return process.cpu_percent(), process.rss() / 1048576
        except OSError:
            return None

    def check_memory(self, now: float) -> None:
        """Once a second: hand each resource with a ``max_memory_mb`` its resident memory."""
        if now < self._next_memory_check:
            return
        self._next_memory_check = now + MEMORY_CHECK_INTERVAL
        for watcher in list(self.watchers.values()):
            if watcher.config.policy.max_memory_mb > 0 and watcher.pid is not None:
                stats = self.stats(watcher)
                if stats is not None:
                    watcher.check_memory(stats[1])

    def broker_reachable(self) -> bool:
        meta = self.meta_resource()
        return meta is not None and meta.is_connected()

    def snapshot(self) -> dict[str, Any]:
        """Everything ``health`` and ``sghost status`` show, and (under ``processes``) what metrics add."""
        config = self.config()
        meta = self.meta_resource()
        memory = host_memory()
        uplink = self.uplink()
        document = {
            "host": config.name,
            "version": __version__,
            "pid": os.getpid(),
            "meta_pid": meta.pid if meta is not None else None,
            "manifest": str(config.path),
            "uptime": round(time.monotonic() - self.started_at),
            "cpu": self._host_cpu.percent(),
            "memory": round(memory.percent, 1),
            "memory_available_mb": round(memory.available / 1048576),
            "broker_connected": self.broker_reachable(),
            "broker": meta.broker if meta is not None else None,
            "resources": {name: resource_snapshot(w, self.stats(w)) for name, w in self.watchers.items()},
            **({"uplink": dict(uplink)} if uplink is not None else {}),
            **self.host_fields,
        }
        document[metrics.PROCESSES] = {
            name: figures for name, w in self.watchers.items() if (figures := self._process_figures(w)) is not None
        }
        return document

    def sample(self) -> None:
        """Take a snapshot and publish it (:class:`HealthSampled`)."""
        self.stream.publish(HealthSampled(self.snapshot()))

    def _process_figures(self, watcher: Watcher) -> dict[str, float] | None:
        """Cumulative CPU seconds, resident bytes and start time (Unix) of a resource's process."""
        process = self._processes.get(watcher.pid) if watcher.pid is not None else None
        if process is None:
            return None
        try:
            return {
                "cpu_seconds": process.cpu_seconds(),
                "memory_bytes": process.rss(),
                "start_time": process.start_time(),
            }
        except OSError:
            return None
