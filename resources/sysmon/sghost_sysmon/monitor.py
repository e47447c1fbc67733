"""Sampling the gateway's figures with psutil, and the dead bands that keep an idle box quiet.

Runs in the resource's own process (imported by ``setup``).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psutil

from sghost_sysmon.settings import DeadBands, SysmonSettings

Figure = int | float
TemperatureReader = Callable[[], Mapping[str, list[Any]]]

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
MIB = 1024 * 1024
_EPSILON = 1e-9
"""Rounded figures: 0.3 - 0.2 must count as a move of 0.1."""
CPU_FIRST_INTERVAL = 0.1
"""Seconds the first CPU reading is measured over, in ``setup``."""


def name_part(text: str) -> str:
    """A piece of a signal name: letters, digits, ``_`` and ``-`` only, lower case (``Core 0`` -> ``core_0``)."""
    return _UNSAFE.sub("_", text).strip("_").lower() or "unnamed"


def disk_label(mount_point: str) -> str:
    """``/`` -> ``root``, ``/var/log`` -> ``var_log``."""
    return name_part(mount_point) if mount_point.strip("/") else "root"


def temperature_sources(reader: TemperatureReader | None) -> dict[str, tuple[str, int]]:
    """Signal name -> (sensor, index in its list) for every temperature the box reports; ``{}`` without any."""
    if reader is None:
        return {}
    try:
        sensors = reader()
    except (OSError, RuntimeError):
        return {}
    sources: dict[str, tuple[str, int]] = {}
    for sensor, readings in sorted(sensors.items()):
        for index, reading in enumerate(readings):
            label = getattr(reading, "label", "") or ""
            name = f"temperature_{name_part(sensor)}" + (f"_{name_part(label)}" if label else "")
            if name in sources or (not label and len(readings) > 1):
                name = f"{name}_{index}"
            sources[name] = (sensor, index)
    return sources


def default_temperature_reader() -> TemperatureReader | None:
    """psutil's reader where the platform has one (Linux, FreeBSD), else ``None``."""
    return getattr(psutil, "sensors_temperatures", None)


class Sampler:
    """Reads every configured figure: ``sample()`` returns signal name -> value."""

    def __init__(
        self,
        settings: SysmonSettings,
        logger: logging.Logger,
        temperature_reader: TemperatureReader | None = None,
    ) -> None:
        self.settings = settings
        self.logger = logger
        self.boot_time = psutil.boot_time()
        self.disks = {disk: disk_label(disk) for disk in settings.disks}
        present = list(psutil.net_io_counters(pernic=True))
        chosen = settings.interfaces if settings.interfaces is not None else [n for n in present if n != "lo"]
        self.interfaces = {interface: name_part(interface) for interface in chosen}
        self.temperature_reader = temperature_reader if settings.temperatures else None
        self.temperatures = temperature_sources(self.temperature_reader)
        self._warned: set[str] = set()
        # A first non-blocking call would only set psutil's reference point and return 0.0.
        self._first_cpu: float | None = psutil.cpu_percent(CPU_FIRST_INTERVAL)

    def signal_names(self) -> list[str]:
        """Every signal this sampler can produce (registered, hence announced, at setup)."""
        names = ["cpu_percent", "load_1", "load_5", "load_15", "memory_used_mb", "memory_available_mb"]
        for label in self.disks.values():
            names += [f"disk_{label}_used_percent", f"disk_{label}_free_mb"]
        names += list(self.temperatures)
        for label in self.interfaces.values():
            names += [f"net_{label}_bytes_sent", f"net_{label}_bytes_recv"]
        names.append("uptime")
        return names

    def sample(self) -> dict[str, Figure]:
        cpu, self._first_cpu = (psutil.cpu_percent(None) if self._first_cpu is None else self._first_cpu), None
        figures: dict[str, Figure] = {"cpu_percent": round(cpu, 1)}
        for minutes, load in zip((1, 5, 15), os.getloadavg(), strict=True):
            figures[f"load_{minutes}"] = round(load, 2)
        memory = psutil.virtual_memory()
        figures["memory_used_mb"] = round((memory.total - memory.available) / MIB, 1)
        figures["memory_available_mb"] = round(memory.available / MIB, 1)
        figures.update(self._disks())
        figures.update(self._temperatures())
        figures.update(self._network())
        figures["uptime"] = int(time.time() - self.boot_time)
        return figures

    def _disks(self) -> dict[str, Figure]:
        figures: dict[str, Figure] = {}
        for mount_point, label in self.disks.items():
            try:
                usage = psutil.disk_usage(mount_point)
            except OSError as error:
                self._warn_once(f"disk:{mount_point}", "disks: cannot read %s (%s); no figures for it", mount_point,
                                error)
                continue
            self._warned.discard(f"disk:{mount_point}")
            figures[f"disk_{label}_used_percent"] = round(usage.percent, 1)
            figures[f"disk_{label}_free_mb"] = round(usage.free / MIB, 1)
        return figures

    def _temperatures(self) -> dict[str, Figure]:
        if not self.temperatures or self.temperature_reader is None:
            return {}
        try:
            sensors = self.temperature_reader()
        except (OSError, RuntimeError) as error:
            self._warn_once("temperatures", "temperatures: cannot read the sensors (%s)", error)
            return {}
        figures: dict[str, Figure] = {}
        for name, (sensor, index) in self.temperatures.items():
            readings = sensors.get(sensor, [])
            if index < len(readings) and readings[index].current is not None:
                figures[name] = round(float(readings[index].current), 1)
        return figures

    def _network(self) -> dict[str, Figure]:
        counters = psutil.net_io_counters(pernic=True)
        figures: dict[str, Figure] = {}
        for interface, label in self.interfaces.items():
            counter = counters.get(interface)
            if counter is None:
                self._warn_once(f"net:{interface}", "interfaces: no interface %r on this box (yet)", interface)
                continue
            self._warned.discard(f"net:{interface}")
            figures[f"net_{label}_bytes_sent"] = counter.bytes_sent
            figures[f"net_{label}_bytes_recv"] = counter.bytes_recv
        return figures

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        """One warning per failing source until it works again: a missing disk must not flood the log."""
        if key not in self._warned:
            self._warned.add(key)
            self.logger.warning(message, *args)


@dataclass
class DeadBandFilter:
    """Keeps the value last sent for each signal and says which new values moved far enough."""

    bands: DeadBands
    sent: dict[str, Figure]

    def changed(self, figures: Mapping[str, Figure]) -> dict[str, Figure]:
        """The figures worth sending; they become the new references."""
        worth = {name: value for name, value in figures.items() if self.worth_sending(name, value)}
        self.sent.update(worth)
        return worth

    def worth_sending(self, name: str, value: Figure) -> bool:
        last = self.sent.get(name)
        if last is None:
            return True
        if value == last:
            return False
        if value < last and (name == "uptime" or name.startswith("net_")):
            return True  # a reboot, or a counter that was reset
        if name == "uptime":
            return value >= last * (1 + self.bands.uptime) - _EPSILON
        return abs(value - last) >= self._band(name, last) - _EPSILON

    def _band(self, name: str, last: Figure) -> float:
        if name.startswith("net_"):
            return self.bands.network
        if name.startswith("memory_") or name.endswith("_free_mb"):
            return max(1.0, abs(last) * self.bands.memory)
        if name == "cpu_percent":
            return self.bands.cpu
        if name.startswith("load_"):
            return self.bands.load
        if name.startswith("disk_"):
            return self.bands.disk
        if name.startswith("temperature_"):
            return self.bands.temperature
        return 0.0
