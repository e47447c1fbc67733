"""sghost start end to end: real broker, real processes, real signals."""

from __future__ import annotations

import signal
from pathlib import Path

import psutil

from hostharness import HostProcess, all_gone, manifest_text, resource_pid, wait_until
from sghost.host.broker import MosquittoBroker
from sghost.testing import Received, Recorder

THREE_NAMES = ("alpha", "beta", "gamma")
THREE = """
[resources.alpha]
type = "echoer"
[resources.beta]
type = "echoer"
[resources.gamma]
type = "taxisign"
"""


def wait_all_present(recorder: Recorder, names: tuple[str, ...]) -> Received:
    """Wait until the host and every resource are up and connected; return the last presence message."""
    for name in names:
        recorder.wait_for(f"data/sghost/{name}_state", "running", timeout=10)
    present = [recorder.wait_for(f"resourceavailable/{name}/presence", "True") for name in ("sghost", *names)]
    return max(present, key=lambda message: message.at)


def start_host(tmp_path: Path, text: str) -> HostProcess:
    manifest = tmp_path / "hostconfig.toml"
    manifest.write_text(text)
    return HostProcess(manifest).start()




def test_several_resources_come_up_with_presence_and_capabilities(mosquitto, mqtt_recorder, host_factory) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host_factory(manifest_text(mosquitto, THREE))
    for name in ("alpha", "beta", "gamma", "sghost"):
        recorder.wait_for(f"resourceavailable/{name}/presence", "True", timeout=10)
    recorder.wait_for("commandavailable/alpha/ping", "True")
    recorder.wait_for("commandavailable/gamma/state", "True")
    for name in ("alpha", "beta", "gamma"):
        recorder.wait_for(f"data/sghost/{name}_state", "running")
    recorder.publish("command/gamma/state", "True")
    recorder.wait_for("data/gamma/state", "True")


def test_sigkilled_resource_is_restarted_and_its_capabilities_go_false_then_true(
    mosquitto, mqtt_recorder, host_factory
) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(manifest_text(mosquitto, THREE))
    recorder.wait_for("data/sghost/alpha_state", "running", timeout=10)
    first = recorder.wait_for("resourceavailable/alpha/presence", "True")
    pid = resource_pid(recorder, "sghost", "alpha")
    beta_pid = resource_pid(recorder, "sghost", "beta")
    psutil.Process(pid).kill()
    lost = recorder.wait_for("commandavailable/alpha/ping", "False", after=first.at)
    # The echo of ping is data, announced like the original does, and withdrawn with the process.
    recorder.wait_for("dataavailable/alpha/ping", "False", after=first.at)
    recorder.wait_for("resourceavailable/alpha/presence", "False", after=first.at)
    recorder.wait_for("commandavailable/alpha/ping", "True", after=lost.at)
    recorder.wait_for("dataavailable/alpha/ping", "True", after=lost.at)
    recorder.wait_for("resourceavailable/alpha/presence", "True", after=lost.at)
    recorder.wait_for("data/sghost/alpha_restarts", "1")
    recorder.wait_for("data/sghost/alpha_error", "killed by SIGKILL")
    resource_pid(recorder, "sghost", "alpha", other_than=pid)  # the restarted resource has a new pid
    assert psutil.pid_exists(beta_pid), "the other resources are untouched"
    host.wait_log("[alpha] pid")


def test_crashing_plugin_backs_off_then_goes_fatal_while_others_run(mosquitto, mqtt_recorder, host_factory) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    text = manifest_text(
        mosquitto,
        '[resources.broken]\ntype = "crasher"\nmax_restarts = 2\nrestart_window = 30.0\n'
        '[resources.fine]\ntype = "echoer"\n',
    )
    host = host_factory(text)
    recorder.wait_for("data/sghost/broken_state", "backoff", timeout=10)
    recorder.wait_for("data/sghost/broken_state", "fatal", timeout=15)
    recorder.wait_for("data/sghost/broken_error", "plugin error: RuntimeError: boom at start")
    recorder.wait_for("resourceavailable/fine/presence", "True")
    host.wait_log("boom at start")
    host.wait_log("[broken] fatal")
    recorder.publish("command/fine/ping", "hello")
    recorder.wait_for("data/fine/ping", "hello")
    assert recorder.latest("data/sghost/fine_state") == "running"


def test_exit_code_is_kept_as_last_error_and_never_policy_stays_stopped(mosquitto, mqtt_recorder, host_factory) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host_factory(
        manifest_text(
            mosquitto,
            '[resources.quitter]\ntype = "exiter"\nrestart = "never"\n[resources.quitter.settings]\ncode = 7\n',
        )
    )
    recorder.wait_for("data/sghost/quitter_error", "exit code 7", timeout=10)
    recorder.wait_for("data/sghost/quitter_state", "stopped")
    assert recorder.latest("data/sghost/quitter_restarts") == "0"


def test_sigterm_stops_everything_cleanly(mosquitto, mqtt_recorder, host_factory) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(manifest_text(mosquitto, THREE))
    started = wait_all_present(recorder, ("alpha", "beta", "gamma"))
    family = [process.pid for process in host.descendants()]
    assert len(family) >= 4, "zygote and three resources"
    host.signal(signal.SIGTERM)
    assert host.wait(15) == 0
    for name in ("alpha", "beta", "gamma", "sghost"):
        recorder.wait_for(f"resourceavailable/{name}/presence", "False", after=started.at)
    for name in ("alpha", "beta", "gamma"):
        recorder.wait_for(f"data/sghost/{name}_state", "stopped", after=started.at)
    assert wait_until(lambda: all_gone(family), 3), "no process is left"


def test_sigkill_of_sghost_leaves_no_child_behind(mosquitto, mqtt_recorder, host_factory) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(manifest_text(mosquitto, THREE))
    started = wait_all_present(recorder, ("alpha", "beta", "gamma"))
    family = [process.pid for process in host.descendants()]
    host.signal(signal.SIGKILL)
    host.wait(5)
    assert wait_until(lambda: all_gone(family), 2.0), "every child exits within 2 s"
    for name in ("alpha", "beta", "gamma", "sghost"):
        recorder.wait_for(f"resourceavailable/{name}/presence", "False", after=started.at)


def test_plugin_that_fails_to_import_is_reported_and_the_others_run(mosquitto, mqtt_recorder, tmp_path) -> None:
    from hostharness import sghost_env

    recorder: Recorder = mqtt_recorder(mosquitto)
    manifest = tmp_path / "hostconfig.toml"
    manifest.write_text(
        manifest_text(mosquitto, '[resources.serialthing]\ntype = "serialthing"\n[resources.fine]\ntype = "echoer"\n')
    )
    host = HostProcess(manifest, sghost_env("sghost_test_plugins,sghost_broken_plugin")).start()
    try:
        host.wait_log("missing dependency: serial")
        recorder.wait_for("data/sghost/serialthing_state", "fatal", timeout=15)
        recorder.wait_for("resourceavailable/fine/presence", "True")
        error = recorder.latest("data/sghost/serialthing_error") or ""
        assert "serialthing" in error and "missing dependency: serial" in error
        recorder.publish("command/fine/ping", "still here")
        recorder.wait_for("data/fine/ping", "still here")
    finally:
        host.stop()


def test_broker_down_at_start_resources_come_up_when_it_appears(fresh_mosquitto, tmp_path) -> None:
    broker: MosquittoBroker = fresh_mosquitto
    broker.stop()
    host = start_host(
        tmp_path,
        manifest_text(broker, '[resources.early]\ntype = "echoer"\n[resources.crashy]\ntype = "crasher"\n'
                      "max_restarts = 1\n"),
    )
    try:
        host.wait_log("[early] started")
        host.wait_log("boom at start", count=3)
        broker.start()
        recorder = Recorder(broker.host, broker.port).start()
        try:
            recorder.wait_for("resourceavailable/early/presence", "True", timeout=15)
            recorder.wait_for("data/sghost/early_state", "running", timeout=10)
            state = recorder.wait_for("data/sghost/crashy_state", timeout=10).payload
            assert state != "fatal", "failures while the broker was unreachable do not count"
        finally:
            recorder.stop()
    finally:
        host.stop()


def test_stop_timeout_kills_a_resource_that_ignores_sigterm(mosquitto, mqtt_recorder, host_factory) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(manifest_text(mosquitto, '[resources.stuck]\ntype = "hanger"\nstop_timeout = 1.0\n'))
    recorder.wait_for("data/sghost/stuck_state", "running", timeout=10)
    recorder.wait_for("resourceavailable/stuck/presence", "True")
    recorder.publish("command/stuck/hang", "now")
    host.wait_log("hanging forever")
    family = [process.pid for process in host.descendants()]
    host.signal(signal.SIGTERM)
    assert host.wait(10) == 0
    host.wait_log("did not stop within 1 s: SIGKILL")
    assert wait_until(lambda: all_gone(family), 2)


def test_child_output_is_captured_with_prefix_and_into_a_rotating_file(
    mosquitto, mqtt_recorder, host_factory, tmp_path
) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    text = manifest_text(
        mosquitto,
        '[resources.sign]\ntype = "taxisign"\n',
        host_extra=f'log_dir = "{tmp_path / "logs"}"\nlog_max_bytes = 1024\nlog_backups = 2\n',
    )
    host = host_factory(text)
    recorder.wait_for("data/sghost/sign_state", "running", timeout=10)
    recorder.wait_for("resourceavailable/sign/presence", "True")
    for index in range(40):
        recorder.publish("command/sign/state", "True" if index % 2 else "False")
    host.wait_log("[sign] Turning on my taxi sign.")
    host.wait_log("Turning off my taxi sign.", count=20)
    logs = sorted(path.name for path in (tmp_path / "logs").iterdir())
    assert logs == ["sign.log", "sign.log.1", "sign.log.2"], "rotated and bounded"
    assert all(path.stat().st_size <= 1024 for path in (tmp_path / "logs").iterdir())
    assert "taxi sign" in (tmp_path / "logs" / "sign.log").read_text()


def test_a_killed_zygote_ends_sghost_with_an_error_and_no_orphans(mosquitto, mqtt_recorder, host_factory) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(manifest_text(mosquitto, THREE))
    started = wait_all_present(recorder, ("alpha", "beta", "gamma"))
    family = [process.pid for process in host.descendants()]
    zygote = psutil.Process(host.pid).children()[0]
    zygote.kill()
    assert host.wait(10) == 1
    host.wait_log("the zygote")
    assert wait_until(lambda: all_gone(family), 3), "the resources die with their zygote"
    for name in ("alpha", "beta", "gamma", "sghost"):
        recorder.wait_for(f"resourceavailable/{name}/presence", "False", after=started.at)


def test_sigterm_to_every_process_at_once_as_systemd_does_still_stops_in_order(
    mosquitto, mqtt_recorder, host_factory
) -> None:
    """systemd's KillMode=control-group (and Ctrl-C in a shell) signal the zygote and resources too."""
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(manifest_text(mosquitto, THREE))
    started = wait_all_present(recorder, ("alpha", "beta", "gamma"))
    family = host.descendants()
    for process in [psutil.Process(host.pid), *family]:
        process.send_signal(signal.SIGTERM)
    assert host.wait(15) == 0
    states = [recorder.wait_for(f"data/sghost/{name}_state", "stopped", after=started.at) for name in THREE_NAMES]
    gone = recorder.wait_for("resourceavailable/sghost/presence", "False", after=started.at)
    assert gone.at >= max(state.at for state in states), "the host's presence goes False last"
    assert wait_until(lambda: all_gone([process.pid for process in family]), 3)
    assert "meta-resource process ended" not in host.log()
    assert "the zygote" not in host.log()


def test_sigterm_right_after_a_resource_started_still_stops_it_at_once(mosquitto, tmp_path) -> None:
    """The stop signal may reach a resource before it has installed its handler: it must wait, not be lost."""
    manifest = tmp_path / "hostconfig.toml"
    manifest.write_text(manifest_text(mosquitto, '[resources.early]\ntype = "echoer"\nstop_timeout = 5.0\n'))
    for _ in range(5):
        host = HostProcess(manifest).start()
        host.wait_log("[early] started")
        host.signal(signal.SIGTERM)
        assert host.wait(15) == 0
        assert "did not stop within" not in host.log(), host.log()
