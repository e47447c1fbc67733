"""Controlling a running sghost: the local socket, systemd notifications, fleet status."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import pytest

from hostharness import HostProcess, manifest_text, run_cli, sghost_env
from sghost.testing import Recorder

_RUNTIME_DIRS: list[str] = []


@pytest.fixture(autouse=True, scope="module")
def _remove_runtime_dirs():
    yield
    for directory in _RUNTIME_DIRS:
        shutil.rmtree(directory, ignore_errors=True)


def runtime_env(tmp_path: Path) -> dict[str, str]:
    """A private XDG_RUNTIME_DIR, short enough for a Unix socket path (pytest's tmp_path is not)."""
    env = sghost_env()
    env["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="sgrun-")
    _RUNTIME_DIRS.append(env["XDG_RUNTIME_DIR"])
    return env


RESOURCES = '[resources.one]\ntype = "echoer"\n[resources.bad]\ntype = "crasher"\nmax_restarts = 1\n'


def test_status_restart_stop_start_through_the_local_socket(mosquitto, mqtt_recorder, host_factory, tmp_path) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    env = runtime_env(tmp_path)
    host = host_factory(manifest_text(mosquitto, RESOURCES, host="ctl"), env=env)
    manifest = str(host.manifest)
    recorder.wait_for("data/ctl/one_state", "running", timeout=10)
    recorder.wait_for("data/ctl/bad_state", "fatal", timeout=15)

    status = run_cli("status", "-c", manifest, env=env)
    assert status.returncode == 0, status.stderr
    assert "one" in status.stdout and "running" in status.stdout and "fatal" in status.stdout
    document = json.loads(run_cli("status", "-c", manifest, "--json", env=env).stdout)
    snapshot = document.get("status", document)
    assert snapshot["resources"]["one"]["state"] == "running"
    assert snapshot["resources"]["bad"]["error"] == "plugin error: RuntimeError: boom at start"
    old_pid = snapshot["resources"]["one"]["pid"]

    restarted = run_cli("restart", "one", "-c", manifest, env=env)
    assert restarted.returncode == 0, restarted.stderr
    recorder.wait_until(lambda: recorder.latest("data/ctl/one_pid") not in (str(old_pid), "0"), 10)
    recorder.wait_for("data/ctl/one_restarts", "1")

    asked = time.monotonic()  # the recorder's clock: "stopped" was also the state before the first start
    assert run_cli("stop", "one", "-c", manifest, env=env).returncode == 0
    stopped = recorder.wait_for("data/ctl/one_state", "stopped", after=asked)
    assert run_cli("start", "one", "-c", manifest, env=env).returncode == 0
    recorder.wait_for("data/ctl/one_state", "running", after=stopped.at)

    fatal = recorder.on("data/ctl/bad_state")[-1]
    assert run_cli("restart", "bad", "-c", manifest, env=env).returncode == 0
    recorder.wait_for("data/ctl/bad_state", "starting", after=fatal.at)
    recorder.wait_for("data/ctl/bad_state", "fatal", after=fatal.at, timeout=15)

    unknown = run_cli("stop", "nosuch", "-c", manifest, env=env)
    assert unknown.returncode == 1
    assert "unknown resource 'nosuch'" in unknown.stderr


def test_systemd_is_told_ready_watchdog_and_stopping(mosquitto, host_factory, tmp_path) -> None:
    env = runtime_env(tmp_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    listener.bind(str(path))
    listener.settimeout(10)
    env["NOTIFY_SOCKET"] = str(path)
    env["WATCHDOG_USEC"] = "400000"  # systemd's WatchdogSec=0.4: sghost pings every 0.2 s
    try:
        host = host_factory(manifest_text(mosquitto, '[resources.one]\ntype = "echoer"\n', host="sd"), env=env)
        messages = [listener.recv(4096).decode()]
        while not any("READY=1" in message for message in messages):
            messages.append(listener.recv(4096).decode())
        while sum("WATCHDOG=1" in message for message in messages) < 3:
            messages.append(listener.recv(4096).decode())
        host.signal(signal.SIGTERM)
        while not any("STOPPING=1" in message for message in messages):
            messages.append(listener.recv(4096).decode())
        assert host.wait(15) == 0
    finally:
        listener.close()


def test_status_without_a_running_host_says_so(tmp_path) -> None:
    env = runtime_env(tmp_path)
    manifest = tmp_path / "hostconfig.toml"
    manifest.write_text(manifest_text(None, '[resources.one]\ntype = "echoer"\n', port=1))
    result = run_cli("status", "-c", str(manifest), env=env)
    assert result.returncode == 1
    assert f"no sghost is running for {manifest}" in result.stderr


def test_second_sghost_for_the_same_manifest_is_refused(mosquitto, mqtt_recorder, host_factory, tmp_path) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    env = runtime_env(tmp_path)
    first = host_factory(manifest_text(mosquitto, '[resources.one]\ntype = "echoer"\n', host="dup"), env=env)
    recorder.wait_for("data/dup/one_state", "running", timeout=10)
    second = HostProcess(first.manifest, env).start()
    assert second.wait(15) == 1
    assert "another sghost already runs" in second.log()
    assert os.path.exists(first.manifest)


def test_two_hosts_on_one_broker_in_fleet_status(mosquitto, mqtt_recorder, tmp_path) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    hosts = []
    try:
        for name in ("north", "south"):
            directory = tmp_path / name
            directory.mkdir()
            manifest = directory / "hostconfig.toml"
            manifest.write_text(manifest_text(mosquitto, f'[resources.{name}sign]\ntype = "taxisign"\n', host=name))
            hosts.append(HostProcess(manifest, runtime_env(directory)).start())
        for name in ("north", "south"):
            recorder.wait_for(f"data/{name}/{name}sign_state", "running", timeout=10)
            recorder.wait_until(lambda name=name: name in (recorder.latest(f"data/{name}/health") or ""), 5)
        result = run_cli("status", "--all", "--broker", f"127.0.0.1:{mosquitto.port}")
        assert result.returncode == 0, result.stderr
        assert "north" in result.stdout and "northsign" in result.stdout
        assert "south" in result.stdout and "southsign" in result.stdout
    finally:
        for host in hosts:
            host.stop()


def test_tls_insecure_is_warned_about_at_every_start(mosquitto, host_factory) -> None:
    resources = '[resources.one]\ntype = "echoer"\n'
    text = manifest_text(mosquitto, resources, host="insecure", broker_extra="tls_insecure = true\n")
    for _ in range(2):
        host = host_factory(text)
        line = host.wait_log("broker.tls_insecure")
        assert "WARNING" in line
        assert host.stop() == 0
