"""Reload of the host-wide settings: [broker], remote_control, log files, and what waits for the next start."""

from __future__ import annotations

import dataclasses
import signal
import time
from pathlib import Path

from hostharness import manifest_text, resource_pid, wait_health_documents, wait_until
from sghost.config.manifest import BrokerConfig, HostConfig, ResourceConfig
from sghost.config.reloadplan import plan_reload
from sghost.testing import Recorder

ONE = '[resources.one]\ntype = "echoer"\n'
TWO = ONE + '[resources.two]\ntype = "echoer"\n'


# ---------------------------------------------------------------- the rules


def host_config(**changes: object) -> HostConfig:
    resources = {name: ResourceConfig(name, "echoer", table={"type": "echoer"}) for name in ("one", "two")}
    return dataclasses.replace(HostConfig(path=Path("hostconfig.toml"), resources=resources), **changes)


def test_a_broker_change_restarts_every_resource_and_the_meta_resource() -> None:
    running = host_config(broker=BrokerConfig(host="10.0.0.1"))
    plan = plan_reload(running, host_config(broker=BrokerConfig(host="10.0.0.2")), running.resources)
    assert plan.changed == ["one", "two"]
    assert plan.restart_meta
    assert plan.config.broker.host == "10.0.0.2"
    assert plan.deferred == []


def test_remote_control_restarts_only_the_meta_resource() -> None:
    running = host_config()
    plan = plan_reload(running, host_config(remote_control=True), running.resources)
    assert plan.changed == [] and plan.added == [] and plan.removed == []
    assert plan.restart_meta
    assert not plan.reopen_logs


def test_log_settings_reopen_the_log_files_and_restart_nothing() -> None:
    running = host_config()
    plan = plan_reload(running, host_config(log_dir=Path("/var/log/sghost")), running.resources)
    assert plan.reopen_logs
    assert plan.changed == [] and not plan.restart_meta


def test_host_name_runtime_dir_and_the_embedded_broker_wait_for_the_next_start() -> None:
    running = host_config(broker=BrokerConfig(embedded=True, port=1884))
    new = host_config(name="gw-new", runtime_dir=Path("/run/elsewhere"), broker=BrokerConfig(port=1885, qos=0))
    plan = plan_reload(running, new, running.resources)
    assert plan.config.name == running.name
    assert plan.config.runtime_dir == running.runtime_dir
    assert plan.config.broker == running.broker, "a [broker] change that moves the embedded broker waits whole"
    assert not plan.restart_meta and plan.changed == []
    assert [line.split(":")[0] for line in plan.deferred] == [
        "[host] name 'sghost' -> 'gw-new'", "[host] runtime_dir", "[broker] embedded / port",
    ]


def test_other_broker_settings_apply_with_an_embedded_broker() -> None:
    running = host_config(broker=BrokerConfig(embedded=True, port=1884))
    plan = plan_reload(running, host_config(broker=BrokerConfig(embedded=True, port=1884, qos=0)), running.resources)
    assert plan.config.broker.qos == 0
    assert plan.changed == ["one", "two"] and plan.restart_meta


# ---------------------------------------------------------------- with a real host


def test_reload_turns_remote_control_on_without_touching_the_resources(
    mosquitto, mqtt_recorder, host_factory, tmp_path
) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(manifest_text(mosquitto, TWO, host="rl1"))
    recorder.wait_for("data/rl1/one_state", "running", timeout=10)
    one_pid = resource_pid(recorder, "rl1", "one")
    online = recorder.wait_for("resourceavailable/rl1/presence", "True")
    (tmp_path / "hostconfig.toml").write_text(
        manifest_text(mosquitto, TWO, host="rl1", host_extra="remote_control = true\n")
    )
    host.signal(signal.SIGHUP)
    host.wait_log("0 restarted, 2 untouched; rl1 reconnects with the new settings")
    recorder.wait_for("commandavailable/rl1/stop", "True", timeout=10)
    recorder.wait_for("resourceavailable/rl1/presence", "True", after=online.at)
    asked = time.monotonic()  # the recorder's clock; "stopped" was also two's state before its first start
    recorder.publish("command/rl1/stop", "two")
    recorder.wait_for("data/rl1/stop", "stop: two")
    recorder.wait_for("data/rl1/two_state", "stopped", after=asked)
    assert recorder.latest("data/rl1/one_pid") == str(one_pid), "the other resources keep their processes"
    host.wait_log("remote control is on")


def test_reload_moves_every_resource_and_the_health_to_another_broker(
    mosquitto, fresh_mosquitto, mqtt_recorder, host_factory, tmp_path
) -> None:
    old: Recorder = mqtt_recorder(mosquitto)
    new: Recorder = mqtt_recorder(fresh_mosquitto)
    host = host_factory(manifest_text(mosquitto, ONE, host="rl2"))
    old.wait_for("data/rl2/one_state", "running", timeout=10)
    old.wait_for("resourceavailable/one/presence", "True")
    first_pid = resource_pid(old, "rl2", "one")
    (tmp_path / "hostconfig.toml").write_text(manifest_text(fresh_mosquitto, ONE, host="rl2"))
    host.signal(signal.SIGHUP)
    host.wait_log("1 restarted, 0 untouched; rl2 reconnects with the new settings")
    # On the new broker: the resource, its commands, and the host's health.
    new.wait_for("resourceavailable/one/presence", "True", timeout=10)
    new.wait_for("resourceavailable/rl2/presence", "True", timeout=10)
    new.wait_for("data/rl2/one_state", "running", timeout=10)
    assert resource_pid(new, "rl2", "one") != first_pid
    new.publish("command/one/ping", "moved")
    new.wait_for("data/one/ping", "moved")
    # On the old one, both said goodbye.
    old.wait_for("resourceavailable/one/presence", "False", timeout=10)
    old.wait_for("resourceavailable/rl2/presence", "False", timeout=10)


def test_reload_opens_the_log_files_of_a_new_log_dir(mosquitto, mqtt_recorder, host_factory, tmp_path) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(manifest_text(mosquitto, ONE, host="rl3"))
    recorder.wait_for("data/rl3/one_state", "running", timeout=10)
    one_pid = resource_pid(recorder, "rl3", "one")
    logs = tmp_path / "logs"
    (tmp_path / "hostconfig.toml").write_text(
        manifest_text(mosquitto, ONE, host="rl3", host_extra=f'log_dir = "{logs}"\n')
    )
    host.signal(signal.SIGHUP)
    host.wait_log("0 added, 0 removed, 0 restarted, 1 untouched")
    recorder.publish("command/one/ping", "to the file")
    host.wait_log("ping to the file")
    assert wait_until(lambda: "ping to the file" in (logs / "one.log").read_text()), "the line is in the new file"
    assert recorder.latest("data/rl3/one_pid") == str(one_pid)


def test_reload_says_which_changes_wait_for_the_next_start(mosquitto, mqtt_recorder, host_factory, tmp_path) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(manifest_text(mosquitto, ONE, host="rl4"))
    recorder.wait_for("data/rl4/one_state", "running", timeout=10)
    (tmp_path / "hostconfig.toml").write_text(manifest_text(mosquitto, ONE, host="rl4-renamed"))
    host.signal(signal.SIGHUP)
    host.wait_log("reload: [host] name 'rl4' -> 'rl4-renamed': the health topics move to the new name")
    host.wait_log("0 restarted, 1 untouched")
    recorder.publish("command/one/ping", "still rl4")
    pinged = recorder.wait_for("data/one/ping", "still rl4", timeout=15)  # a loaded machine after a reload
    # The barrier on the host's own path: two health documents, still under the old name.
    wait_health_documents(recorder, "rl4", after=pinged.at)
    assert not [m for m in recorder.messages if m.topic.startswith("data/rl4-renamed/")]


def test_reload_turns_remote_control_off_and_withdraws_its_commands(
    mosquitto, mqtt_recorder, host_factory, tmp_path
) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(manifest_text(mosquitto, ONE, host="rl5", host_extra="remote_control = true\n"))
    offered = recorder.wait_for("commandavailable/rl5/stop", "True", timeout=10)
    recorder.wait_for("data/rl5/one_state", "running", timeout=10)
    (tmp_path / "hostconfig.toml").write_text(manifest_text(mosquitto, ONE, host="rl5"))
    host.signal(signal.SIGHUP)
    host.wait_log("remote control is off")
    for op in ("start", "stop", "restart"):
        recorder.wait_for(f"commandavailable/rl5/{op}", "False", after=offered.at)
    back = recorder.wait_for("resourceavailable/rl5/presence", "True", after=offered.at, timeout=10)
    recorder.publish("command/rl5/stop", "one")
    command = recorder.wait_for("command/rl5/stop", "one", after=back.at)
    recorder.publish("command/one/ping", "after")
    recorder.wait_for("data/one/ping", "after")
    # An answer would come from the host's client before its next two health documents.
    wait_health_documents(recorder, "rl5", after=command.at)
    assert not [m for m in recorder.on("data/rl5/stop") if m.at >= back.at], "no answer: nobody obeys"
    assert recorder.latest("data/rl5/one_state") == "running"


def test_reload_removes_a_resource_that_has_no_process(mosquitto, mqtt_recorder, host_factory, tmp_path) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    ghost = '[resources.ghost]\ntype = "crasher"\nmax_restarts = 1\nbackoff_max = 60\n'  # fatal, then quiet
    host = host_factory(manifest_text(mosquitto, ONE + ghost, host="rl9"))
    recorder.wait_for("data/rl9/ghost_state", "fatal", timeout=10)
    recorder.wait_for("data/rl9/one_state", "running", timeout=10)
    (tmp_path / "hostconfig.toml").write_text(manifest_text(mosquitto, ONE, host="rl9"))
    host.signal(signal.SIGHUP)
    host.wait_log("0 added, 1 removed, 0 restarted, 1 untouched")
    recorder.wait_for("data/rl9/ghost_state", "", timeout=10)  # its health topics are cleared
    recorder.publish("command/one/ping", "after")
    recorder.wait_for("data/one/ping", "after")
