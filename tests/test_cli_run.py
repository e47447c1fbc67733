"""``sghost run TYPE``: one resource in the foreground against a real mosquitto; Ctrl-C stops it cleanly."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hostharness import ChildProcess, run_cli, sghost_env
from sghost.cli.run import parse_value
from sghost.host.broker import MosquittoBroker
from sghost.testing import Recorder


@pytest.fixture
def foreground(child_process: Callable[..., ChildProcess]) -> Callable[..., ChildProcess]:
    """``foreground(*args)``: ``sghost run ARGS`` in its own process group, as a shell runs a foreground job."""
    return lambda *args: child_process([sys.executable, "-m", "sghost", "run", *args], sghost_env())


def test_a_resource_runs_logs_on_the_terminal_and_stops_on_ctrl_c(
    foreground: Callable[..., ChildProcess], mosquitto: MosquittoBroker, mqtt_recorder: Callable[..., Recorder]
) -> None:
    recorder = mqtt_recorder(mosquitto)
    run = foreground("taxisign", "--name", "cab", "--broker", f"127.0.0.1:{mosquitto.port}")
    recorder.wait_for("resourceavailable/cab/presence", "True", timeout=15)
    recorder.wait_for("commandavailable/cab/state", "True")
    run.wait_log("sghost run: set up; announces 2 topic(s): commandavailable/cab/state, dataavailable/cab/state")
    run.wait_log(f"sghost run: connected to 127.0.0.1:{mosquitto.port}")

    recorder.publish("command/cab/state", "True")
    recorder.wait_for("data/cab/state", "True")
    run.wait_log("INFO cab: Turning on my taxi sign.")

    run.ctrl_c()
    assert run.wait() == 0, "\n".join(run.lines)
    recorder.wait_for("resourceavailable/cab/presence", "False")
    assert not any("Traceback" in line for line in run.lines), "\n".join(run.lines)


def test_settings_from_a_file_and_set_values_typed_as_toml(
    foreground: Callable[..., ChildProcess], mosquitto: MosquittoBroker, mqtt_recorder: Callable[..., Recorder],
    tmp_path: Path,
) -> None:
    settings = tmp_path / "sysmon.toml"
    settings.write_text('interval = 30\ndisks = ["/"]\n[deadbands]\ncpu = 5\n')
    recorder = mqtt_recorder(mosquitto, "data/gw/uptime")
    # interval=0.2 must arrive as a float (check_settings refuses a string) and beat the file's 30 s.
    run = foreground("sysmon", "--name", "gw", "--settings-file", str(settings), "--set", "interval=0.2",
                     "--set", "deadbands.uptime=0", "--set", "interfaces=[]", "--set", "temperatures=false",
                     "--broker", f"127.0.0.1:{mosquitto.port}")
    first = int(recorder.wait_for("data/gw/uptime", timeout=15).payload)
    assert recorder.wait_until(lambda: any(int(m.payload) > first for m in recorder.on("data/gw/uptime")), 5)
    run.wait_log("Sampling 9 figures every 0.2 s")  # 8 + uptime: no interfaces, no temperatures
    os.kill(run.process.pid, signal.SIGTERM)  # a service manager stops it the same way
    assert run.wait() == 0, "\n".join(run.lines)


def test_a_failing_setup_is_reported_with_its_exit_code(foreground: Callable[..., ChildProcess],
                                                        mosquitto: MosquittoBroker) -> None:
    run = foreground("crasher", "--broker", f"127.0.0.1:{mosquitto.port}")
    assert run.wait() == 70
    run.wait_log("sghost run: plugin error: ")
    run.wait_log("sghost run: the resource process exited with code 70")


@pytest.mark.parametrize(("args", "expected"), [
    (["sysmon", "--set", "interval=soon"],
     "sghost run: settings: interval: expected a number of seconds >= 0.1, not 'soon' (str)"),
    (["sysmon", "--set", "colour=red", "--set", "disks=3"], "sghost run: settings: colour: unknown key"),
    (["sysmon", "--set", "interval"], "sghost run: --set 'interval': expected KEY=VALUE, e.g. interval=5"),
    (["sysmon", "--set", "interval=1", "--set", "interval.x=2"], "sghost run: --set 'interval.x=2': interval is 1"),
    (["sysmon", "--settings-file", "/nonexistent/s.toml"], "--settings-file '/nonexistent/s.toml': cannot read it"),
    (["sysmon", "--broker", "127.0.0.1:http"], "sghost run: --broker '127.0.0.1:http': port 'http' is not a number"),
    (["sysmon", "--name", "a/b"], "sghost run: --name: The resource name 'a/b' contains '/'"),
    (["sysmn"], 'sghost run: no installed plugin offers resource type "sysmn"'),
])
def test_bad_input_exits_2_naming_it(args: list[str], expected: str) -> None:
    result = run_cli("run", *args)
    assert result.returncode == 2, result
    assert expected in result.stderr


def test_a_settings_file_that_is_not_toml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("interval = \n")
    result = run_cli("run", "sysmon", "--settings-file", str(bad))
    assert result.returncode == 2 and f"--settings-file {str(bad)!r}: not valid TOML" in result.stderr


@pytest.mark.parametrize(("text", "value"), [
    ("5", 5), ("1.5", 1.5), ("true", True), ("[1, 2]", [1, 2]), ('"5"', "5"), ("abc", "abc"),
    ("/dev/ttyUSB0", "/dev/ttyUSB0"), ("", ""), ("{ a = 1 }", {"a": 1}),
])
def test_set_values_are_toml_when_they_parse(text: str, value: Any) -> None:
    assert parse_value(text) == value
