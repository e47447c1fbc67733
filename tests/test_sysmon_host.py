"""The sysmon plugin under a real ``sghost start`` and a real mosquitto; its settings under ``sghost check``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hostharness import HostProcess, manifest_text, run_cli
from sghost.host.broker import MosquittoBroker
from sghost.testing import Recorder

SYSMON = """
[resources.box]
type = "sysmon"
[resources.box.settings]
interval = 0.2
disks = ["/"]
interfaces = ["lo"]
[resources.box.settings.deadbands]
uptime = 0
"""


def test_figures_arrive_announced_and_keep_coming(
    host_factory: Callable[..., HostProcess], mosquitto: MosquittoBroker, mqtt_recorder: Callable[..., Recorder]
) -> None:
    recorder = mqtt_recorder(mosquitto)
    host = host_factory(manifest_text(mosquitto, SYSMON))
    recorder.wait_for("resourceavailable/box/presence", "True", timeout=15)
    for signal in ("cpu_percent", "load_1", "memory_available_mb", "disk_root_used_percent", "net_lo_bytes_recv",
                   "uptime"):
        recorder.wait_for(f"dataavailable/box/{signal}", "True")
        float(recorder.wait_for(f"data/box/{signal}").payload)
    first = int(recorder.wait_for("data/box/uptime").payload)
    assert recorder.wait_until(lambda: any(int(m.payload) > first for m in recorder.on("data/box/uptime")), 5), (
        f"uptime not sent again by the resource loop: {host.log()}"
    )
    recorder.wait_for("data/sghost/box_state", "running")

    host.stop()
    recorder.wait_for("resourceavailable/box/presence", "False", after=recorder.on("data/box/uptime")[-1].at)
    assert recorder.latest("dataavailable/box/cpu_percent") == "False"


def test_check_names_the_bad_setting(tmp_path: Path) -> None:
    manifest = tmp_path / "hostconfig.toml"
    manifest.write_text(manifest_text(None, '[resources.box]\ntype = "sysmon"\n'
                                            '[resources.box.settings]\ninterval = "ten"\ndisk = ["/"]\n'))
    result = run_cli("check", "-c", str(manifest))
    assert result.returncode == 2, result
    assert "resources.box.settings: interval: expected a number of seconds >= 0.1, not 'ten' (str)" in result.stderr
    assert "resources.box.settings: disk: unknown key; expected one of interval, disks" in result.stderr
