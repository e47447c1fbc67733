"""Prometheus metrics: the text format as prometheus_client parses it, the textfile, ``sghost metrics``."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hostharness import manifest_text, run_cli, wait_until
from sghost.health.metrics import render, write_atomically

SNAPSHOT = {
    "host": "gateway1",
    "version": "1.2.3",
    "broker_connected": True,
    "resources": {
        "roof.sign": {"state": "running", "restarts": 2, "pid": 4242, "error": "", "dropped": 3, "refused": 1},
        'odd"name': {"state": "fatal", "restarts": 7, "pid": None, "error": "plugin error: boom"},
    },
    "processes": {"roof.sign": {"cpu_seconds": 1.25, "memory_bytes": 20971520, "start_time": 1764583200.5}},
}


def parse(text: str) -> dict[str, dict]:
    """Every family by name: its type, help and samples as {labels tuple: value}."""
    families = {}
    for family in text_string_to_metric_families(text):
        samples = {tuple(sorted(sample.labels.items())): sample.value for sample in family.samples}
        named = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value for sample in family.samples}
        families[family.name] = {"type": family.type, "help": family.documentation, "samples": samples, "named": named}
    return families


def value(families: dict[str, dict], sample: str, **labels: str) -> float:
    """The value of one sample, by its own name (a counter's samples keep their _total)."""
    key = tuple(sorted(labels.items()))
    for family in families.values():
        if (sample, key) in family["named"]:
            return family["named"][(sample, key)]
    raise AssertionError(f"no sample {sample}{labels} in {sorted(families)}")


def test_render_gives_every_metric_with_help_type_and_prometheus_names() -> None:
    text = render(SNAPSHOT)
    families = parse(text)
    # prometheus_client strips _total from counter family names.
    assert {name: family["type"] for name, family in families.items()} == {
        "sghost_host_info": "gauge",
        "sghost_broker_connected": "gauge",
        "sghost_resource_up": "gauge",
        "sghost_resource_state": "gauge",
        "sghost_resource_restarts": "counter",
        "sghost_resource_start_time_seconds": "gauge",
        "sghost_resource_cpu_seconds": "counter",
        "sghost_resource_resident_memory_bytes": "gauge",
        "sghost_resource_messages_dropped": "counter",
        "sghost_resource_messages_refused": "counter",
    }
    assert all(family["help"] for family in families.values())
    assert "# TYPE sghost_resource_restarts_total counter" in text
    assert value(families, "sghost_host_info", host="gateway1", version="1.2.3") == 1
    assert value(families, "sghost_broker_connected") == 1
    assert value(families, "sghost_resource_up", resource="roof.sign") == 1
    assert value(families, "sghost_resource_up", resource='odd"name') == 0
    states = {labels: v for labels, v in families["sghost_resource_state"]["samples"].items()
              if ("resource", "roof.sign") in labels}
    assert len(states) == 7 and sum(states.values()) == 1
    assert value(families, "sghost_resource_state", resource="roof.sign", state="running") == 1
    assert value(families, "sghost_resource_state", resource='odd"name', state="fatal") == 1
    assert value(families, "sghost_resource_restarts_total", resource='odd"name') == 7
    assert value(families, "sghost_resource_cpu_seconds_total", resource="roof.sign") == 1.25
    assert value(families, "sghost_resource_resident_memory_bytes", resource="roof.sign") == 20971520
    assert value(families, "sghost_resource_start_time_seconds", resource="roof.sign") == 1764583200.5
    assert value(families, "sghost_resource_messages_dropped_total", resource="roof.sign") == 3
    assert value(families, "sghost_resource_messages_refused_total", resource="roof.sign") == 1
    # A resource without counters (before issue 8's keys) counts 0; one without a process has no process figures.
    assert value(families, "sghost_resource_messages_dropped_total", resource='odd"name') == 0
    cpu_resources = [dict(labels)["resource"] for labels in families["sghost_resource_cpu_seconds"]["samples"]]
    assert cpu_resources == ["roof.sign"]


def test_uplink_metric_only_when_an_uplink_is_configured() -> None:
    assert "sghost_uplink_connected" not in parse(render(SNAPSHOT))
    families = parse(render({**SNAPSHOT, "uplink": {"connected": False}}))
    assert families["sghost_uplink_connected"]["type"] == "gauge"
    assert value(families, "sghost_uplink_connected") == 0
    assert value(parse(render({**SNAPSHOT, "uplink": {"connected": True}})), "sghost_uplink_connected") == 1


def test_write_atomically_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sghost.prom"
    target.write_text("old\n")
    write_atomically(target, "new\n")
    assert target.read_text() == "new\n"
    assert os.listdir(tmp_path) == ["sghost.prom"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_write_atomically_into_a_missing_directory_raises_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_atomically(tmp_path / "gone" / "sghost.prom", "x\n")
    assert os.listdir(tmp_path) == []


def test_manifest_rejects_a_textfile_that_the_collector_would_ignore(tmp_path: Path) -> None:
    manifest = tmp_path / "hostconfig.toml"
    manifest.write_text('[metrics]\ntextfile = "sghost.txt"\n[hooks]\non_state = "notify"\n')
    result = run_cli("check", "-c", str(manifest))
    assert result.returncode == 2
    assert 'metrics.textfile: "sghost.txt" does not end in .prom' in result.stderr
    assert 'hooks.on_state: got "notify" (a string); expected an array of strings' in result.stderr


def test_textfile_and_sghost_metrics_show_the_running_host(mosquitto, host_factory, tmp_path: Path) -> None:
    textfile = tmp_path / "collector" / "sghost.prom"
    textfile.parent.mkdir()
    resources = '[resources.alpha]\ntype = "echoer"\n[resources.crash]\ntype = "crasher"\nmax_restarts = 1\n'
    extra = f'[metrics]\ntextfile = "{textfile}"\n'
    host = host_factory(manifest_text(mosquitto, resources + extra))

    def shown() -> dict | None:
        if not textfile.exists():
            return None
        families = parse(textfile.read_text())
        up = families.get("sghost_resource_up", {}).get("samples", {})
        fatal = families["sghost_resource_state"]["samples"].get((("resource", "crash"), ("state", "fatal")))
        ready = up.get((("resource", "alpha"),)) == 1 and fatal == 1 and "sghost_resource_cpu_seconds" in families
        return families if ready else None

    families = wait_until(shown, timeout=15)
    assert families, f"the textfile never showed alpha running and crash fatal:\n{host.log()}"
    assert os.listdir(textfile.parent) == ["sghost.prom"]
    assert value(families, "sghost_host_info", host="sghost", version=_version()) == 1
    assert value(families, "sghost_broker_connected") == 1
    assert value(families, "sghost_resource_resident_memory_bytes", resource="alpha") > 1 << 20
    # An idle child forked from the zygote may not have used a clock tick yet.
    assert value(families, "sghost_resource_cpu_seconds_total", resource="alpha") >= 0
    assert value(families, "sghost_resource_restarts_total", resource="crash") >= 1

    printed = run_cli("metrics", "-c", str(host.manifest))
    assert printed.returncode == 0, printed.stderr
    live = parse(printed.stdout)
    assert set(live) == set(families)
    assert value(live, "sghost_resource_up", resource="alpha") == 1


def test_sghost_metrics_without_a_running_host_says_so(tmp_path: Path) -> None:
    manifest = tmp_path / "hostconfig.toml"
    manifest.write_text('[host]\nname = "idle"\n')
    result = run_cli("metrics", "-c", str(manifest))
    assert result.returncode == 1
    assert "sghost metrics: no sghost is running for" in result.stderr
    assert result.stdout == ""


def test_an_unwritable_textfile_is_logged_once_and_supervision_goes_on(mosquitto, host_factory, tmp_path) -> None:
    textfile = tmp_path / "sghost.prom"
    extra = f'[metrics]\ntextfile = "{textfile}"\n'
    host = host_factory(manifest_text(mosquitto, '[resources.alpha]\ntype = "echoer"\n' + extra))
    assert wait_until(textfile.is_file, timeout=10)
    textfile.unlink()
    textfile.mkdir()  # a rename onto a directory fails, for root too
    host.wait_log(f"cannot write the metrics file {textfile}", timeout=10)
    result = run_cli("metrics", "-c", str(host.manifest))  # takes longer than a health_interval
    assert result.returncode == 0
    assert value(parse(result.stdout), "sghost_resource_up", resource="alpha") == 1
    assert host.log().count("cannot write the metrics file") == 1
    textfile.rmdir()
    host.wait_log(f"metrics file {textfile} written again", timeout=10)
    assert "sghost_resource_up" in textfile.read_text()
    assert [path.name for path in tmp_path.iterdir() if path.name.endswith(".tmp")] == []


def _version() -> str:
    from sghost import __version__

    return __version__
