"""Dependencies with readiness, logs on demand, rebirth and environment, end to end.

Each test runs a real ``sghost start`` on the module's private mosquitto, with
the plugins of tests/plugins/sghost_supervision_plugins.py; every host and
resource has names of its own, since the broker's retained state is shared.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from hostharness import HostProcess, manifest_text, resource_pid, run_cli, sghost_env
from sghost.host.broker import MosquittoBroker
from sghost.host.logring import MAX_LINE_CHARS
from sghost.testing import Recorder

PLUGINS = "sghost_test_plugins,sghost_supervision_plugins"
PERIODIC = ("/health", "_uptime", "_cpu", "_memory", "memory_available_mb")


def env(**extra: str) -> dict[str, str]:
    return {**sghost_env(PLUGINS), **extra}


def cli(host: HostProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "-c", str(host.manifest), env=env())


# ---------------------------------------------------------------- dependencies


def test_dependent_waits_until_a_signalling_dependency_is_ready(mosquitto, mqtt_recorder, host_factory) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(
        manifest_text(
            mosquitto,
            '[resources.w1_app]\ntype = "echoer"\ndepends_on = ["w1_can"]\n'
            '[resources.w1_can]\ntype = "signaller"\n',
            host="w1",
        ),
        env=env(),
    )
    recorder.wait_for("data/w1/w1_app_state", "waiting", timeout=10)
    recorder.wait_for("data/w1/w1_app_waiting_for", "w1_can")
    recorder.wait_for("resourceavailable/w1_can/presence", "True", timeout=10)  # connected, not yet ready
    status = cli(host, "status")
    assert "waiting for w1_can" in status.stdout, status.stdout
    assert recorder.latest("data/w1/w1_can_state") == "starting"
    assert recorder.latest("data/w1/w1_app_state") == "waiting"

    recorder.publish("command/w1_can/ready", "now")
    ready = recorder.wait_for("data/w1/w1_can_state", "running")
    started = recorder.wait_for("data/w1/w1_app_state", "starting", after=ready.at)
    recorder.wait_for("data/w1/w1_app_state", "running", after=started.at)
    recorder.wait_for("resourceavailable/w1_app/presence", "True")
    assert min(m.at for m in recorder.on("resourceavailable/w1_app/presence")) >= ready.at, "w1_app ran before"
    recorder.wait_for("data/w1/w1_app_waiting_for", "none")


def test_a_dependency_that_never_signals_fails_after_ready_timeout(mosquitto, mqtt_recorder, host_factory) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host_factory(
        manifest_text(mosquitto, '[resources.w2_can]\ntype = "signaller"\nready_timeout = 0.5\n', host="w2"),
        env=env(),
    )
    recorder.wait_for(
        "data/w2/w2_can_error", "not ready within ready_timeout 0.5 s (context.ready() was not called)", timeout=10
    )
    recorder.wait_for("data/w2/w2_can_restarts", "1", timeout=10)


def test_killed_dependency_leaves_dependents_running_or_restarts_them_after_it(
    mosquitto, mqtt_recorder, host_factory
) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(
        manifest_text(
            mosquitto,
            '[resources.k_base]\ntype = "echoer"\n'
            '[resources.k_keep]\ntype = "echoer"\ndepends_on = ["k_base"]\n'
            '[resources.k_follow]\ntype = "echoer"\ndepends_on = ["k_base"]\nrestart_with_dependencies = true\n',
            host="k",
        ),
        env=env(),
    )
    for name in ("k_base", "k_keep", "k_follow"):
        recorder.wait_for(f"data/k/{name}_state", "running", timeout=10)
    base, keep, follow = (resource_pid(recorder, "k", name) for name in ("k_base", "k_keep", "k_follow"))
    killed_at = time.monotonic()
    psutil.Process(base).kill()
    base_again = recorder.wait_for("data/k/k_base_state", "running", after=killed_at, timeout=10)
    recorder.wait_for("data/k/k_follow_restarts", "1", timeout=10)
    resource_pid(recorder, "k", "k_follow", other_than=follow)
    follow_again = recorder.wait_for("data/k/k_follow_state", "starting", after=killed_at)
    assert follow_again.at >= base_again.at, "k_follow started again only once k_base was ready"
    recorder.wait_for("data/k/k_follow_state", "running", after=follow_again.at)
    assert psutil.pid_exists(keep), "k_keep kept running"
    assert recorder.latest("data/k/k_keep_restarts") == "0"

    # `sghost stop k_base` stops it alone; its dependents then follow the same rule
    follow = resource_pid(recorder, "k", "k_follow", other_than=follow)
    assert cli(host, "stop", "k_base").returncode == 0
    stopped = recorder.wait_for("data/k/k_base_state", "stopped", after=base_again.at)
    assert recorder.latest("data/k/k_follow_state") == "running" and psutil.pid_exists(follow)
    assert cli(host, "start", "k_base").returncode == 0
    recorder.wait_for("data/k/k_base_state", "running", after=stopped.at)
    recorder.wait_for("data/k/k_follow_restarts", "2", timeout=10)
    assert psutil.pid_exists(keep), "k_keep kept running throughout"


def _stop_order(host: HostProcess, names: tuple[str, str], since: int) -> list[str]:
    stopped = [line for line in host.lines[since:] if " stopped after " in line]
    return [name for line in stopped for name in names if f"[{name}] pid" in line]


def test_dependents_stop_before_their_dependencies_on_stop_all_and_shutdown(
    mosquitto, mqtt_recorder, host_factory
) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(
        manifest_text(
            mosquitto,
            '[resources.o_top]\ntype = "echoer"\ndepends_on = ["o_base"]\n[resources.o_base]\ntype = "echoer"\n',
            host="o",
        ),
        env=env(),
    )
    recorder.wait_for("data/o/o_top_state", "running", timeout=10)
    assert cli(host, "stop", "all").returncode == 0
    recorder.wait_for("data/o/o_base_state", "stopped", timeout=10)
    top_gone = recorder.wait_for("resourceavailable/o_top/presence", "False")
    base_gone = recorder.wait_for("resourceavailable/o_base/presence", "False")
    assert top_gone.at <= base_gone.at
    host.wait_log("[o_base] pid")
    assert _stop_order(host, ("o_top", "o_base"), 0) == ["o_top", "o_base"]

    since = len(host.lines)
    assert cli(host, "start", "all").returncode == 0
    running = recorder.wait_for("data/o/o_top_state", "running", after=base_gone.at, timeout=10)
    host.signal(signal.SIGTERM)
    assert host.wait(15) == 0  # the log is complete
    top_gone = recorder.wait_for("resourceavailable/o_top/presence", "False", after=running.at)
    base_gone = recorder.wait_for("resourceavailable/o_base/presence", "False", after=running.at)
    assert top_gone.at <= base_gone.at
    assert _stop_order(host, ("o_top", "o_base"), since) == ["o_top", "o_base"]


def test_reload_keeps_the_order(mosquitto, mqtt_recorder, host_factory) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    base = '[resources.rl_other]\ntype = "echoer"\n'
    added = '[resources.rl_top]\ntype = "echoer"\ndepends_on = ["rl_sig"]\n[resources.rl_sig]\ntype = "signaller"\n'
    host = host_factory(manifest_text(mosquitto, base, host="rl"), env=env())
    recorder.wait_for("data/rl/rl_other_state", "running", timeout=10)
    host.manifest.write_text(manifest_text(mosquitto, base + added, host="rl"))
    assert cli(host, "reload").returncode == 0
    recorder.wait_for("data/rl/rl_top_state", "waiting", timeout=10)
    recorder.wait_for("resourceavailable/rl_sig/presence", "True", timeout=10)
    recorder.publish("command/rl_sig/ready", "1")
    recorder.wait_for("data/rl/rl_top_state", "running", timeout=10)

    since = len(host.lines)
    host.manifest.write_text(manifest_text(mosquitto, base, host="rl"))
    assert cli(host, "reload").returncode == 0
    recorder.wait_for("resourceavailable/rl_sig/presence", "False", timeout=10)
    host.wait_log("[rl_sig] pid")
    assert _stop_order(host, ("rl_top", "rl_sig"), since) == ["rl_top", "rl_sig"]


def test_check_refuses_a_cycle_an_unknown_name_and_a_self_dependency(tmp_path: Path) -> None:
    manifest = tmp_path / "hostconfig.toml"
    manifest.write_text(
        '[resources.a]\ntype = "echoer"\ndepends_on = ["b"]\n'
        '[resources.b]\ntype = "echoer"\ndepends_on = ["a"]\n'
        '[resources.c]\ntype = "echoer"\ndepends_on = ["c"]\n'
        '[resources.d]\ntype = "echoer"\ndepends_on = ["canbuss"]\n'
        '[resources.canbus]\ntype = "echoer"\n'
    )
    result = run_cli("check", "-c", str(manifest), env=env())
    assert result.returncode == 2, result
    assert f"{manifest}: resources.a.depends_on: dependency cycle a -> b -> a" in result.stderr
    assert "resources.c.depends_on: depends on itself (c -> c)" in result.stderr
    assert 'resources.d.depends_on: unknown resource "canbuss"' in result.stderr
    assert 'did you mean "canbus"?' in result.stderr


# ------------------------------------------------------------------------ logs


def test_logs_tail_follow_and_post_mortem(mosquitto, mqtt_recorder, host_factory, child_process) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(
        manifest_text(
            mosquitto,
            '[resources.lg_p]\ntype = "printer"\nrestart = "never"\n[resources.lg_e]\ntype = "echoer"\n',
            host="lg",
        ),
        env=env(),
    )
    recorder.wait_for("resourceavailable/lg_p/presence", "True", timeout=10)
    recorder.wait_for("commandavailable/lg_p/say", "True")
    follower = child_process([sys.executable, "-m", "sghost", "logs", "-f", "lg_p", "-c", str(host.manifest)], env())
    follower.wait_log("line 12", exact=True)  # the tail came: it follows from now on
    for number in range(1, 6):
        recorder.publish("command/lg_p/say", f"marker {number}")
    follower.wait_log("marker 5", exact=True)  # -f shows lines printed after it started

    tail = cli(host, "logs", "-n", "5", "lg_p")
    assert tail.returncode == 0, tail.stderr
    assert tail.stdout.splitlines() == [f"marker {number}" for number in range(1, 6)]
    interleaved = cli(host, "logs", "-n", "2")
    assert interleaved.stdout.splitlines() == ["[lg_p] marker 4", "[lg_p] marker 5"]

    recorder.publish("command/lg_p/garbage", "")
    recorder.publish("command/lg_p/say", "x" * (MAX_LINE_CHARS + 100))
    recorder.publish("command/lg_p/say", "after garbage")
    follower.wait_log("after garbage", exact=True)
    kept = cli(host, "logs", "-n", "3", "lg_p").stdout.splitlines()
    assert "\\x1b[2J" in kept[0] and "\\x00" in kept[0], "control characters are shown escaped"
    assert kept[1] == "x" * MAX_LINE_CHARS + " [... 100 more characters cut]"
    assert kept[2] == "after garbage"

    recorder.publish("command/lg_p/crash", "out of cheese")
    recorder.wait_for("data/lg/lg_p_state", "stopped", timeout=10)
    assert follower.process.poll() is None, "-f goes on following a resource that died"
    post_mortem = cli(host, "logs", "-n", "2", "lg_p").stdout.splitlines()
    assert post_mortem == ["after garbage", "dying: out of cheese"]
    status = cli(host, "status").stdout
    assert "exit code 4 | last stderr: dying: out of cheese" in status, status
    follower.signal(signal.SIGINT)
    assert follower.wait(10) in (0, -signal.SIGINT)

    not_running = cli(host, "rebirth", "lg_p")
    assert not_running.returncode == 1
    assert "rebirth: lg_p has no running process" in not_running.stderr

    unknown = cli(host, "logs", "nosuch")
    assert unknown.returncode == 1
    assert "unknown resource 'nosuch'" in unknown.stderr


def test_logs_without_a_running_host_says_so(tmp_path: Path) -> None:
    manifest = tmp_path / "hostconfig.toml"
    manifest.write_text('[host]\nname = "nobody"\n')
    result = run_cli("logs", "-c", str(manifest), env=env(XDG_RUNTIME_DIR=str(tmp_path)))
    assert result.returncode == 1
    assert "no sghost is running for" in result.stderr


# --------------------------------------------------------------------- rebirth


def _wipe_retained(broker: MosquittoBroker, recorder: Recorder) -> None:
    """Delete every retained message the recorder saw, as a broker that lost its state would have none."""
    for topic in {message.topic for message in recorder.messages if message.payload}:
        recorder.publish(topic, b"", retain=True)
    fresh = Recorder(broker.host, broker.port).start()
    try:
        recorder.publish("rebirth_test/sentinel", "here")
        fresh.wait_for("rebirth_test/sentinel", "here")
        # The meta-resource publishes these again by itself every health_interval.
        leftovers = [m.topic for m in fresh.messages if m.retain and m.payload and not m.topic.endswith(PERIODIC)]
        assert not leftovers, f"retained state left: {leftovers}"
    finally:
        fresh.stop()


def test_rebirth_republishes_everything_for_a_subscriber_without_retained_state(
    mosquitto, mqtt_recorder, host_factory
) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto, ["resourceavailable/#", "commandavailable/#", "dataavailable/#",
                                                   "data/#"])
    host = host_factory(
        manifest_text(mosquitto, '[resources.rb_e]\ntype = "echoer"\n', host="rb", host_extra="remote_control = true"),
        env=env(),
    )
    recorder.wait_for("data/rb/rb_e_state", "running", timeout=10)
    recorder.wait_for("resourceavailable/rb_e/presence", "True")
    recorder.publish("command/rb_e/ping", "hello")
    recorder.wait_for("data/rb_e/ping", "hello")
    recorder.wait_for("data/rb/health")
    _wipe_retained(mosquitto, recorder)

    fresh: Recorder = mqtt_recorder(mosquitto)
    result = cli(host, "rebirth")
    assert result.returncode == 0, result.stderr
    assert "rb_e" in result.stdout
    fresh.wait_for("resourceavailable/rb_e/presence", "True")
    fresh.wait_for("commandavailable/rb_e/ping", "True")
    fresh.wait_for("data/rb_e/ping", "hello", retain=False)  # the last echo, not the default
    fresh.wait_for("resourceavailable/rb/presence", "True")
    fresh.wait_for("dataavailable/rb/rb_e_state", "True")
    fresh.wait_for("data/rb/rb_e_state", "running")
    fresh.wait_for("data/rb/health")

    _wipe_retained(mosquitto, recorder)
    over_mqtt: Recorder = mqtt_recorder(mosquitto)
    over_mqtt.publish("command/rb/rebirth", "rb_e")
    over_mqtt.wait_for("data/rb/rebirth", "rebirth: rb_e")
    over_mqtt.wait_for("resourceavailable/rb_e/presence", "True")
    over_mqtt.wait_for("data/rb_e/ping", "hello")


# ----------------------------------------------------------------- environment


def test_environment_and_env_file_reach_the_plugin(mosquitto, mqtt_recorder, host_factory, tmp_path: Path) -> None:
    (tmp_path / "vars.env").write_text('# for the reporter\nFROM_FILE="a quoted value"\n; another comment\n\n'
                                       "OVERRIDDEN=from the file\n")
    recorder: Recorder = mqtt_recorder(mosquitto)
    host_factory(
        manifest_text(
            mosquitto,
            '[resources.ev]\ntype = "envreporter"\nenv_file = "vars.env"\nenvironment = { OVERRIDDEN = "resource" }\n'
            '[resources.ev.settings]\nkeys = ["FROM_DEFAULTS", "FROM_FILE", "OVERRIDDEN", "FROM_SUPERVISOR"]\n',
            host="evhost",
            defaults='environment = { FROM_DEFAULTS = "defaults", OVERRIDDEN = "defaults" }',
        ),
        env=env(FROM_SUPERVISOR="inherited"),
    )
    recorder.wait_for("data/ev/env_FROM_DEFAULTS", "defaults", timeout=10)
    recorder.wait_for("data/ev/env_FROM_FILE", "a quoted value")
    recorder.wait_for("data/ev/env_OVERRIDDEN", "resource")
    recorder.wait_for("data/ev/env_FROM_SUPERVISOR", "inherited")
    assert "FROM_FILE" not in os.environ


def test_the_broker_password_is_not_put_into_a_resource_environment(
    mosquitto, mqtt_recorder, host_factory, tmp_path: Path
) -> None:
    password = "s3cret-probe-4711"
    (tmp_path / "broker.password").write_text(password + "\n")
    (tmp_path / "broker.password").chmod(0o600)
    recorder: Recorder = mqtt_recorder(mosquitto)
    host_factory(
        manifest_text(
            mosquitto,
            f'[resources.evp]\ntype = "envreporter"\n[resources.evp.settings]\nsecret_probe = "{password}"\n'
            # the probe's control: a variable the manifest does set is seen
            f'[resources.evq]\ntype = "envreporter"\nenvironment = {{ GIVEN = "{password}" }}\n'
            f'[resources.evq.settings]\nsecret_probe = "{password}"\n',
            host="evphost",
            broker_extra='username = "gateway"\npassword_file = "broker.password"',
        ),
        env=env(),
    )
    recorder.wait_for("data/evq/env_holds_probe", "yes", timeout=10)
    recorder.wait_for("data/evp/env_holds_probe", timeout=10)
    assert recorder.latest("data/evp/env_holds_probe") == "no"


def test_check_names_the_bad_line_of_an_env_file(tmp_path: Path) -> None:
    (tmp_path / "vars.env").write_text("GOOD=1\n# fine\nthis is not an assignment\n")
    manifest = tmp_path / "hostconfig.toml"
    manifest.write_text(
        '[resources.a]\ntype = "echoer"\nenv_file = "vars.env"\n'
        '[resources.b]\ntype = "echoer"\nenv_file = "missing.env"\nenvironment = { "1BAD" = "x", N = 3 }\n'
    )
    result = run_cli("check", "-c", str(manifest), env=env())
    assert result.returncode == 2, result
    bad_line = "line 3: no '=' in 'this is not an assignment'"
    assert f"resources.a.env_file: {tmp_path / 'vars.env'} {bad_line}" in result.stderr
    assert f"resources.b.env_file: file not found: {tmp_path / 'missing.env'}" in result.stderr
    assert "resources.b.environment.1BAD: not a variable name" in result.stderr
    assert "resources.b.environment.N: got 3 (an integer); expected a string" in result.stderr


def test_logs_show_a_very_long_line_cut_with_a_marker_and_the_lines_after_it(
    mosquitto, mqtt_recorder, host_factory, child_process
) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(
        manifest_text(mosquitto, '[resources.ll_p]\ntype = "printer"\n', host="ll"), env=env()
    )
    recorder.wait_for("commandavailable/ll_p/say", "True", timeout=10)
    follower = child_process([sys.executable, "-m", "sghost", "logs", "-f", "ll_p", "-c", str(host.manifest)], env())
    follower.wait_log("line 12", exact=True)
    long_line = "y" * (1 << 20)
    recorder.publish("command/ll_p/say", long_line)
    recorder.publish("command/ll_p/say", "after the long line")
    follower.wait_log("after the long line", exact=True)
    shown = cli(host, "logs", "-n", "50", "ll_p").stdout.splitlines()
    cut = f"{'y' * MAX_LINE_CHARS} [... {len(long_line) - MAX_LINE_CHARS} more characters cut]"
    assert shown[-2:] == [cut, "after the long line"], [line[:80] + "..." + line[-60:] for line in shown]
    assert "line 12" in shown, "the lines before the long one are kept too"


def test_a_resource_that_never_becomes_ready_shows_backoff_between_its_attempts(
    mosquitto, mqtt_recorder, host_factory
) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto, "data/w5/#")
    # ready_timeout above policy.STABLE_AFTER: the process "ran long", yet it never started.
    host_factory(
        manifest_text(
            mosquitto,
            '[resources.w5_can]\ntype = "signaller"\nready_timeout = 2.5\nbackoff_initial = 0.2\n',
            host="w5",
        ),
        env=env(),
    )

    def attempts() -> list[str]:
        states = [message.payload for message in recorder.on("data/w5/w5_can_state")]
        return states[states.index("starting"):] if "starting" in states else []

    recorder.wait_until(lambda: len(attempts()) >= 5 or recorder.latest("data/w5/w5_can_restarts") == "3", 30)
    assert attempts()[:5] == ["starting", "backoff", "starting", "backoff", "starting"], attempts()
    assert recorder.latest("data/w5/w5_can_error") == (
        "not ready within ready_timeout 2.5 s (context.ready() was not called)"
    )
