"""A process's CPU and memory, and the host's, read from Linux's ``/proc``: what health sampling needs of psutil.

The supervisor samples every ``health_interval`` for its whole life; importing psutil for
it cost about 0.75 MiB of its resident memory. These are the same figures psutil gives
(``Process.cpu_percent``, ``memory_info().rss``, ``cpu_times``, ``create_time``,
``virtual_memory``, ``cpu_percent``), read from the same files. A process that is gone
raises ``OSError`` (``FileNotFoundError`` or ``ProcessLookupError``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class HostMemory:
    """``/proc/meminfo``: ``percent`` in use, as psutil counts it: (total - available) / total."""

    total: int
    available: int

    @property
    def percent(self) -> float:
        return (self.total - self.available) / self.total * 100 if self.total else 0.0


def host_memory() -> HostMemory:
    fields: dict[str, int] = {}
    with open("/proc/meminfo", "rb") as meminfo:
        for line in meminfo:
            name, _, rest = line.partition(b":")
            if name in (b"MemTotal", b"MemAvailable", b"MemFree"):
                fields[name.decode()] = int(rest.split()[0]) * 1024
    return HostMemory(fields.get("MemTotal", 0), fields.get("MemAvailable", fields.get("MemFree", 0)))


def _boot_time() -> float:
    with open("/proc/stat", "rb") as stat:
        for line in stat:
            if line.startswith(b"btime"):
                return float(line.split()[1])
    return 0.0


def _host_cpu_times() -> tuple[float, float]:
    """(busy, total) clock ticks of all CPUs together since boot; idle and iowait are not busy."""
    with open("/proc/stat", "rb") as stat:
        values = [int(value) for value in stat.readline().split()[1:9]]
    total = sum(values)
    return total - values[3] - values[4], total


class HostCpu:
    """The host's CPU in use since the previous call (the first: since construction), in % of all CPUs, as psutil's."""

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = _host_cpu_times()

    def percent(self) -> float:
        busy, total = _host_cpu_times()
        last, self._last = self._last, (busy, total)
        if last is None or total <= last[1]:
            return 0.0
        return round(max(0.0, (busy - last[0]) / (total - last[1]) * 100), 1)


class ProcessStat:
    """One process by pid: its CPU since the previous look, resident memory, CPU times and start."""

    _boot: float | None = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._last_cpu: tuple[float, float] | None = None

    def _stat_fields(self) -> list[bytes]:
        with open(f"/proc/{self.pid}/stat", "rb") as stat:
            data = stat.read()
        return data[data.rindex(b")") + 2 :].split()  # after "pid (comm) ": the name may hold spaces

    def cpu_seconds(self) -> float:
        """User and system CPU time, in seconds."""
        fields = self._stat_fields()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def start_time(self) -> float:
        """When the process started, as a Unix time."""
        if ProcessStat._boot is None:
            ProcessStat._boot = _boot_time()
        return ProcessStat._boot + int(self._stat_fields()[19]) / CLOCK_TICKS

    def rss(self) -> int:
        """Resident memory in bytes."""
        with open(f"/proc/{self.pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE

    def cpu_percent(self) -> float:
        """CPU used since the previous call, in % of one core (0.0 on the first call)."""
        now, used = time.monotonic(), self.cpu_seconds()
        last, self._last_cpu = self._last_cpu, (now, used)
        if last is None or now <= last[0]:
            return 0.0
        return (used - last[1]) / (now - last[0]) * 100
