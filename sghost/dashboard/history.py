"""The last hour of each resource's CPU, memory and restarts, in fixed-size rings.

The dashboard's process samples the host's status every :data:`SAMPLE_INTERVAL`
seconds from the moment it starts, so a page opened later still gets the hour
before it. Each resource keeps :data:`CAPACITY` samples in four ``array``
rings (time, CPU, memory, restarts): :data:`BYTES_PER_RESOURCE` bytes, whatever
happens (about 14 KiB; 700 KiB for 50 resources). A resource that leaves the
manifest leaves its ring.

CPU is worked out here from each process's cumulative CPU seconds (the status
document's ``processes``), over the time between two samples of this
process, so other readers of the status do not shorten the window.
"""

from __future__ import annotations

from array import array
from typing import Any

SAMPLE_INTERVAL = 5.0
"""Seconds between two samples."""
HISTORY_SECONDS = 3600
CAPACITY = int(HISTORY_SECONDS / SAMPLE_INTERVAL)
"""Samples kept per resource: one hour."""
BYTES_PER_RESOURCE = CAPACITY * (8 + 4 + 4 + 4)
MIB = 1048576


class Ring:
    """One resource's samples: time (Unix seconds), CPU (% of one core), memory (MiB), restarts."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self.times = array("d", bytes(8 * capacity))
        self.cpu = array("f", bytes(4 * capacity))
        self.memory = array("f", bytes(4 * capacity))
        self.restarts = array("l", bytes(array("l").itemsize * capacity))
        self.count = 0
        self.next = 0

    def append(self, at: float, cpu: float, memory: float, restarts: int) -> None:
        index = self.next
        self.times[index], self.cpu[index], self.memory[index], self.restarts[index] = at, cpu, memory, restarts
        self.next = (index + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)

    def _ordered(self, values: array) -> list[Any]:  # type: ignore[type-arg]
        start = (self.next - self.count) % self.capacity
        if start + self.count <= self.capacity:
            return values[start : start + self.count].tolist()
        return values[start:].tolist() + values[: self.next].tolist()

    def as_dict(self) -> dict[str, list[Any]]:
        """Oldest first: ``{"t": [...], "cpu": [...], "memory": [...], "restarts": [...]}``."""
        return {
            "t": [round(value, 1) for value in self._ordered(self.times)],
            "cpu": [round(value, 1) for value in self._ordered(self.cpu)],
            "memory": [round(value, 1) for value in self._ordered(self.memory)],
            "restarts": self._ordered(self.restarts),
        }


class History:
    """Every resource's ring, fed with status documents."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self.rings: dict[str, Ring] = {}
        self._cpu_seconds: dict[str, tuple[float, float, float]] = {}
        """Per resource: the process's start time, its CPU seconds, and when they were read."""

    def add(self, status: dict[str, Any], at: float) -> dict[str, list[float]]:
        """Record one sample of each resource in ``status``; return the new ``{name: [cpu, memory, restarts]}``."""
        resources = status.get("resources") or {}
        processes = status.get("processes") or {}
        points: dict[str, list[float]] = {}
        for name in [name for name in self.rings if name not in resources]:
            del self.rings[name]
            self._cpu_seconds.pop(name, None)
        for name, values in resources.items():
            figures = processes.get(name)
            cpu = self._cpu(name, figures, at, values)
            memory = figures["memory_bytes"] / MIB if figures else 0.0
            restarts = int(values.get("restarts") or 0)
            ring = self.rings.get(name)
            if ring is None:
                ring = self.rings[name] = Ring(self.capacity)
            ring.append(at, cpu, memory, restarts)
            points[name] = [round(cpu, 1), round(memory, 1), restarts]
        return points

    def _cpu(self, name: str, figures: dict[str, float] | None, at: float, values: dict[str, Any]) -> float:
        if not figures:
            self._cpu_seconds.pop(name, None)
            return 0.0
        before = self._cpu_seconds.get(name)
        now = (figures["start_time"], figures["cpu_seconds"], at)
        self._cpu_seconds[name] = now
        if before is None or before[0] != now[0] or at <= before[2]:
            return float(values.get("cpu") or 0.0)  # a new process: the host's own figure
        return max(0.0, (now[1] - before[1]) / (at - before[2]) * 100)

    def of(self, name: str) -> dict[str, list[Any]] | None:
        ring = self.rings.get(name)
        return ring.as_dict() if ring is not None else None
