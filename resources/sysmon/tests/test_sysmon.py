"""The sysmon resource: its settings check, its dead bands, its names, and its figures on a real broker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
from sgframework import Resource
from sghost.context import ResourceContext
from sghost.plugins import PluginRegistry
from sghost.testing import MosquittoBroker, Recorder

import sghost_sysmon
from sghost_sysmon.monitor import DeadBandFilter, disk_label, name_part, temperature_sources
from sghost_sysmon.settings import DeadBands, SysmonSettings, check_settings, read_settings


class Reading(NamedTuple):
    """The shape of one psutil.sensors_temperatures() entry."""

    label: str
    current: float | None
    high: float | None = None
    critical: float | None = None


# ------------------------------------------------------------ settings


def test_defaults_and_a_full_valid_table() -> None:
    assert read_settings({}) == (SysmonSettings(), [])
    settings, problems = read_settings({
        "interval": 5, "disks": ["/", "/tmp"], "interfaces": ["eth0"], "temperatures": False,
        "deadbands": {"cpu": 2, "network": 0},
    })
    assert problems == []
    assert settings.interval == 5.0 and settings.disks == ("/", "/tmp") and settings.interfaces == ("eth0",)
    assert settings.temperatures is False
    assert settings.deadbands == DeadBands(cpu=2.0, network=0.0)


@pytest.mark.parametrize(("settings", "expected"), [
    ({"interval": "ten"}, "interval: expected a number of seconds >= 0.1, not 'ten' (str)"),
    ({"interval": 0}, "interval: expected a number of seconds >= 0.1, not 0 (int)"),
    ({"interval": True}, "interval: expected a number of seconds >= 0.1, not True (bool)"),
    ({"disks": "/"}, "disks: expected a list of non-empty strings, not '/' (str)"),
    ({"disks": ["data"]}, "disks: expected absolute mount points (starting with '/'), not ['data']"),
    ({"interfaces": [""]}, "interfaces: expected a list of non-empty strings, not [''] (list)"),
    ({"temperatures": "yes"}, "temperatures: expected true or false, not 'yes' (str)"),
    ({"deadbands": 1}, "deadbands: expected a table, not 1 (int)"),
    ({"deadbands": {"cpu": -1}}, "deadbands.cpu: expected a number >= 0, not -1 (int)"),
    ({"deadbands": {"fan": 1}}, "deadbands.fan: unknown key; expected one of cpu, load, memory, disk, "
                                "temperature, network, uptime"),
    ({"intervall": 5}, "intervall: unknown key; expected one of interval, disks, interfaces, temperatures, deadbands"),
])
def test_each_bad_setting_is_named(settings: dict[str, Any], expected: str) -> None:
    assert check_settings(settings) == [expected]


def test_every_problem_at_once() -> None:
    assert len(check_settings({"interval": -1, "disks": 3, "nope": 1})) == 3


def test_setup_refuses_bad_settings_it_was_given_anyway(mosquitto: MosquittoBroker) -> None:
    context = ResourceContext("sysmon", {"interval": "x"}, Resource("sysmon", mosquitto.host, mosquitto.port))
    with pytest.raises(ValueError, match="interval: expected a number"):
        sghost_sysmon.setup(context)


# ------------------------------------------------------------ dead bands and names


def test_dead_bands_keep_an_idle_box_quiet() -> None:
    first = {"cpu_percent": 3.0, "load_1": 0.2, "memory_used_mb": 1000.0, "disk_root_used_percent": 40.0,
             "disk_root_free_mb": 5000.0, "temperature_cpu": 45.0, "net_eth0_bytes_sent": 10_000, "uptime": 1000}
    bands = DeadBandFilter(DeadBands(), dict(first))
    jitter = {"cpu_percent": 3.9, "load_1": 0.25, "memory_used_mb": 1040.0, "disk_root_used_percent": 40.5,
              "disk_root_free_mb": 4900.0, "temperature_cpu": 45.5, "net_eth0_bytes_sent": 20_000, "uptime": 1099}
    assert bands.changed(jitter) == {}
    moved = {"cpu_percent": 4.0, "load_1": 0.3, "memory_used_mb": 1050.0, "disk_root_used_percent": 41.0,
             "disk_root_free_mb": 4700.0, "temperature_cpu": 46.0, "net_eth0_bytes_sent": 10_000 + 1048576,
             "uptime": 1100}
    assert bands.changed(moved) == moved
    assert bands.changed(moved) == {}  # the references moved with what was sent


def test_a_counter_that_went_back_and_a_new_figure_are_sent() -> None:
    bands = DeadBandFilter(DeadBands(), {"net_eth0_bytes_recv": 5_000_000, "uptime": 1000})
    assert bands.changed({"net_eth0_bytes_recv": 10, "uptime": 5, "load_5": 0.0}) == {
        "net_eth0_bytes_recv": 10, "uptime": 5, "load_5": 0.0}


def test_zero_dead_bands_send_every_change_and_only_changes() -> None:
    bands = DeadBandFilter(DeadBands(cpu=0, uptime=0, network=0), {"cpu_percent": 1.0, "uptime": 10, "net_x": 1})
    assert bands.changed({"cpu_percent": 1.0, "uptime": 10, "net_x": 1}) == {}
    assert bands.changed({"cpu_percent": 1.1, "uptime": 11, "net_x": 2}) == {"cpu_percent": 1.1, "uptime": 11,
                                                                             "net_x": 2}


def test_names_are_valid_topic_levels() -> None:
    assert name_part("Package id 0") == "package_id_0"
    assert name_part("wlan0/+#") == "wlan0"
    assert disk_label("/") == "root" and disk_label("/var/log/") == "var_log"


def test_temperatures_absent_give_no_signal() -> None:
    assert temperature_sources(None) == {}
    assert temperature_sources(dict) == {}

    def broken() -> dict[str, list[Any]]:
        raise OSError("no /sys")

    assert temperature_sources(broken) == {}


def test_temperature_names_are_unique() -> None:
    sensors = {"coretemp": [Reading("Package id 0", 50.0), Reading("Core 0", 48.0), Reading("Core 0", 47.0)],
               "acpitz": [Reading("", 40.0), Reading("", 41.0)], "nvme": [Reading("", 33.0)]}
    assert temperature_sources(lambda: sensors) == {
        "temperature_acpitz_0": ("acpitz", 0), "temperature_acpitz_1": ("acpitz", 1),
        "temperature_coretemp_package_id_0": ("coretemp", 0), "temperature_coretemp_core_0": ("coretemp", 1),
        "temperature_coretemp_core_0_2": ("coretemp", 2), "temperature_nvme": ("nvme", 0),
    }


# ------------------------------------------------------------ on a real broker


@pytest.fixture
def started(start_resource: Callable[..., ResourceContext]) -> Callable[..., ResourceContext]:
    """``started(broker, settings)``: a sysmon resource named ``sysmon`` in this process (sghost.testing)."""
    return lambda broker, settings: start_resource(sghost_sysmon.setup, broker, settings, "sysmon")


def test_figures_are_announced_and_retained(
    started: Callable[..., ResourceContext], mosquitto: MosquittoBroker, mqtt_recorder: Callable[..., Recorder]
) -> None:
    started(mosquitto, {"disks": ["/"], "interfaces": ["lo"]})
    mqtt_recorder(mosquitto, "data/sysmon/uptime").wait_for("data/sysmon/uptime")  # the last one published
    recorder = mqtt_recorder(mosquitto, ["dataavailable/sysmon/+", "data/sysmon/+"])  # a late subscriber
    for signal in ("cpu_percent", "load_1", "load_5", "load_15", "memory_used_mb", "memory_available_mb",
                   "disk_root_used_percent", "disk_root_free_mb", "net_lo_bytes_sent", "net_lo_bytes_recv", "uptime"):
        recorder.wait_for(f"dataavailable/sysmon/{signal}", "True", retain=True)
        float(recorder.wait_for(f"data/sysmon/{signal}", retain=True).payload)
    assert 0.0 <= float(recorder.latest("data/sysmon/cpu_percent") or "-1") <= 100.0
    assert int(recorder.latest("data/sysmon/uptime") or "0") > 0


def test_a_moving_figure_is_sent_again(
    started: Callable[..., ResourceContext], mosquitto: MosquittoBroker, mqtt_recorder: Callable[..., Recorder]
) -> None:
    context = started(mosquitto, {"interval": 0.1, "deadbands": {"uptime": 0}, "interfaces": []})
    recorder = mqtt_recorder(mosquitto, "data/sysmon/uptime")
    first = int(recorder.wait_for("data/sysmon/uptime").payload)

    def newer() -> bool:
        context.run_due_timers()  # what sghost's resource loop does
        return any(int(message.payload) > first for message in recorder.on("data/sysmon/uptime"))

    assert recorder.wait_until(newer, 5), f"uptime not sent again after {first}: {recorder.on('data/sysmon/uptime')}"


def test_entry_point_is_discovered() -> None:
    """Needs ``pip install -e resources/sysmon`` (``make install``)."""
    registry = PluginRegistry()
    registry.load(autoload=True)
    kind = registry.get("sysmon")
    assert kind.setup is sghost_sysmon.setup
    assert kind.check_settings is sghost_sysmon.check_settings
    assert registry.check_settings("box", "sysmon", {"interval": "x"}) == [
        "interval: expected a number of seconds >= 0.1, not 'x' (str)"]
