"""Health as data of the meta-resource, watchdog, memory limit, reload and remote control."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

from hostharness import HostProcess, manifest_text, resource_pid, run_cli, wait_health_documents, wait_until
from sghost.testing import Received, Recorder


def wait_prefix(recorder: Recorder, topic: str, prefix: str, timeout: float) -> Received:
    found = recorder.wait_until(
        lambda: next((m for m in recorder.on(topic) if m.payload.startswith(prefix)), None), timeout
    )
    assert found, f"no {prefix!r}... on {topic}; seen: {[m.payload for m in recorder.on(topic)]}"
    return found  # type: ignore[return-value]


def health_document(recorder: Recorder, host: str) -> dict:
    """The latest ``data/<host>/health`` document the recorder saw, or ``{}``."""
    return json.loads(recorder.latest(f"data/{host}/health") or "{}")


def health_states(recorder: Recorder, host: str) -> dict[str, str]:
    """Each resource's state in the latest health document."""
    resources = health_document(recorder, host).get("resources", {})
    return {name: values["state"] for name, values in resources.items()}


ONE_ECHOER = '[resources.one]\ntype = "echoer"\n'
TWO = '[resources.one]\ntype = "echoer"\n[resources.two]\ntype = "counter"\n'




def test_health_topics_are_retained_for_a_late_subscriber(mosquitto, host_factory) -> None:
    host = host_factory(manifest_text(mosquitto, TWO, host="gw1"))
    host.wait_log("[two] started")
    watcher = Recorder(mosquitto.host, mosquitto.port).start()
    try:
        watcher.wait_for("data/gw1/one_state", "running", timeout=10)
        watcher.wait_for("data/gw1/two_uptime", timeout=5)
        assert watcher.wait_until(lambda: health_states(watcher, "gw1") == {"one": "running", "two": "running"}, 5)
        late = Recorder(mosquitto.host, mosquitto.port, "#").start()
        try:
            for field in ("state", "restarts", "pid", "uptime", "cpu", "memory", "error"):
                for name in ("one", "two"):
                    message = late.wait_for(f"data/gw1/{name}_{field}", timeout=5)
                    assert message.retain, f"{name}_{field} is retained"
                    late.wait_for(f"dataavailable/gw1/{name}_{field}", "True", retain=True)
            assert late.latest("data/gw1/one_error") == "none"
            assert late.wait_for("resourceavailable/gw1/presence", "True").retain
            health = json.loads(late.wait_for("data/gw1/health", retain=True).payload)
            assert health["host"] == "gw1"
            assert set(health["resources"]) == {"one", "two"}
            assert health["resources"]["one"]["state"] == "running"
            assert {"cpu", "memory", "uptime", "version"} <= set(health)
        finally:
            late.stop()
    finally:
        watcher.stop()


def test_the_health_document_follows_state_changes_without_waiting_for_the_interval(
    mosquitto, mqtt_recorder, host_factory
) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    text = manifest_text(mosquitto, TWO, host="gw12").replace("health_interval = 1.0", "health_interval = 3600")
    host_factory(text)
    assert recorder.wait_until(lambda: health_states(recorder, "gw12") == {"one": "running", "two": "running"}, 10), (
        f"health document: {recorder.latest('data/gw12/health')}"
    )
    document = health_document(recorder, "gw12")
    assert isinstance(document["meta_pid"], int)
    one_pid = document["resources"]["one"]["pid"]
    os.kill(one_pid, signal.SIGKILL)

    def restarted() -> dict | None:
        one = health_document(recorder, "gw12")["resources"]["one"]
        return one if one["restarts"] == 1 and one["state"] == "running" and one["pid"] != one_pid else None

    one = recorder.wait_until(restarted, 10)
    assert one, f"health document: {recorder.latest('data/gw12/health')}"
    assert one["error"] == "killed by SIGKILL"


def test_clean_stop_reports_stopped_then_host_presence_false(mosquitto, mqtt_recorder, host_factory) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(manifest_text(mosquitto, TWO, host="gw2"))
    recorder.wait_for("data/gw2/two_state", "running", timeout=10)
    up = recorder.wait_for("resourceavailable/gw2/presence", "True")
    host.signal(signal.SIGTERM)
    assert host.wait(15) == 0
    one = recorder.wait_for("data/gw2/one_state", "stopped", after=up.at)
    two = recorder.wait_for("data/gw2/two_state", "stopped", after=up.at)
    gone = recorder.wait_for("resourceavailable/gw2/presence", "False", after=up.at)
    assert gone.at >= max(one.at, two.at), "the host's presence goes False after the states"


def test_hung_resource_is_killed_by_the_watchdog_and_restarted(mosquitto, mqtt_recorder, host_factory) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host_factory(manifest_text(mosquitto, '[resources.hung]\ntype = "hanger"\nwatchdog = 2.0\n', host="gw3"))
    recorder.wait_for("data/gw3/hung_state", "running", timeout=10)
    recorder.wait_for("resourceavailable/hung/presence", "True")
    recorder.publish("command/hung/hang", "now")
    hang = recorder.wait_for("command/hung/hang", "now")
    # How soon after the hang the kill comes is a figure of bench/reaction.py, not a test.
    error = wait_prefix(recorder, "data/gw3/hung_error", "watchdog", timeout=10)
    assert error.at >= hang.at and error.payload.startswith("watchdog: no heartbeat for 2 s"), error.payload
    recorder.wait_for("data/gw3/hung_restarts", "1", timeout=5)
    recorder.wait_for("data/gw3/hung_state", "running", after=error.at, timeout=10)


def test_memory_hog_is_restarted_with_memory_error(mosquitto, mqtt_recorder, host_factory) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    text = manifest_text(
        mosquitto,
        '[resources.hog]\ntype = "hog"\nmax_memory_mb = 100\n[resources.hog.settings]\nmb = 400\n',
        host="gw4",
    )
    host_factory(text)
    error = wait_prefix(recorder, "data/gw4/hog_error", "memory:", timeout=20)
    assert "max_memory_mb 100" in error.payload
    recorder.wait_for("data/gw4/hog_restarts", "1", timeout=5)


def test_reload_keeps_untouched_pids_and_applies_changes(mosquitto, mqtt_recorder, host_factory, tmp_path) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    base = (
        '[resources.keep]\ntype = "echoer"\n[resources.change]\ntype = "counter"\n'
        '[resources.drop]\ntype = "echoer"\n'
    )
    host = host_factory(manifest_text(mosquitto, base, host="gw5"))
    for name in ("keep", "change", "drop"):
        recorder.wait_for(f"data/gw5/{name}_state", "running", timeout=10)
    keep_pid = resource_pid(recorder, "gw5", "keep")
    change_pid = resource_pid(recorder, "gw5", "change")
    changed = (
        '[resources.keep]\ntype = "echoer"\n[resources.change]\ntype = "counter"\n'
        "[resources.change.settings]\ninterval = 0.5\n[resources.new]\ntype = \"echoer\"\n"
    )
    (tmp_path / "hostconfig.toml").write_text(manifest_text(mosquitto, changed, host="gw5"))
    host.signal(signal.SIGHUP)
    recorder.wait_for("data/gw5/new_state", "running", timeout=10)
    recorder.wait_for("data/gw5/drop_state", "", timeout=10)
    recorder.wait_for("dataavailable/gw5/drop_state", "", timeout=5)
    resource_pid(recorder, "gw5", "change", other_than=change_pid)
    assert recorder.latest("data/gw5/keep_pid") == str(keep_pid), "an untouched resource keeps its process"
    host.wait_log("1 added, 1 removed, 1 restarted, 1 untouched")


def test_bad_manifest_on_reload_changes_nothing(mosquitto, mqtt_recorder, host_factory, tmp_path) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(manifest_text(mosquitto, '[resources.keep]\ntype = "echoer"\n', host="gw6"))
    recorder.wait_for("data/gw6/keep_state", "running", timeout=10)
    recorder.wait_for("resourceavailable/keep/presence", "True")
    pid = resource_pid(recorder, "gw6", "keep")
    (tmp_path / "hostconfig.toml").write_text(
        manifest_text(mosquitto, '[resources.keep]\ntype = "echoer"\nrestart = "sometimes"\n', host="gw6")
    )
    host.signal(signal.SIGHUP)
    host.wait_log("reload rejected, nothing changed")
    host.wait_log('resources.keep.restart: "sometimes" is not a restart policy')
    recorder.publish("command/keep/ping", "alive")
    recorder.wait_for("data/keep/ping", "alive")
    assert recorder.latest("data/gw6/keep_pid") == str(pid)


def test_remote_control_when_enabled(mosquitto, mqtt_recorder, host_factory) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host_factory(manifest_text(mosquitto, TWO, host="gw7", host_extra="remote_control = true\n"))
    recorder.wait_for("data/gw7/one_state", "running", timeout=10)
    recorder.wait_for("commandavailable/gw7/restart", "True")
    asked = time.monotonic()  # the recorder's clock; "stopped" was also one's state before its first start
    recorder.publish("command/gw7/stop", "one")
    recorder.wait_for("data/gw7/stop", "stop: one")
    stopped = recorder.wait_for("data/gw7/one_state", "stopped", after=asked)
    recorder.publish("command/gw7/start", "one")
    recorder.wait_for("data/gw7/start", "start: one")
    recorder.wait_for("data/gw7/one_state", "running", after=stopped.at)
    recorder.publish("command/gw7/restart", "nosuch")
    answer = recorder.wait_for("data/gw7/restart")
    assert answer.payload.startswith("error: unknown resource 'nosuch'")
    wait_health_documents(recorder, "gw7", after=answer.at)  # a restart would show before them
    assert recorder.latest("data/gw7/two_restarts") == "0", "an unknown name changes nothing"
    restarts = {name: r["restarts"] for name, r in health_document(recorder, "gw7")["resources"].items()}
    assert restarts == {"one": 1, "two": 0}, "one was started again once (by 'start'); 'nosuch' restarted nothing"


def test_a_start_while_stopping_starts_it_again_once_it_has_ended(mosquitto, mqtt_recorder, host_factory) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(manifest_text(
        mosquitto, '[resources.hung]\ntype = "hanger"\nstop_timeout = 3.0\n', host="gw15",
        host_extra="remote_control = true\n",
    ))
    first = recorder.wait_for("data/gw15/hung_state", "running", timeout=10)
    recorder.wait_for("resourceavailable/hung/presence", "True")
    recorder.publish("command/hung/hang", "now")
    host.wait_log("hanging forever")  # SIGTERM cannot end it now: it stays stopping until stop_timeout
    recorder.publish("command/gw15/stop", "hung")
    stopping = recorder.wait_for("data/gw15/hung_state", "stopping", after=first.at)
    recorder.publish("command/gw15/start", "hung")
    recorder.wait_for("data/gw15/start", "start: hung")
    stopped = recorder.wait_for("data/gw15/hung_state", "stopped", after=stopping.at, timeout=10)
    recorder.wait_for("data/gw15/hung_state", "running", after=stopped.at, timeout=10)
    recorder.wait_for("data/gw15/hung_restarts", "1")


def test_remote_control_is_off_by_default(mosquitto, mqtt_recorder, host_factory) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(manifest_text(mosquitto, TWO, host="gw8"))
    recorder.wait_for("data/gw8/one_state", "running", timeout=10)
    recorder.wait_for("resourceavailable/one/presence", "True")
    recorder.publish("command/gw8/stop", "one")
    command = recorder.wait_for("command/gw8/stop", "one")
    recorder.publish("command/one/ping", "after")
    recorder.wait_for("data/one/ping", "after")
    # An answer, or one's new state, would come from the host's client before its next health documents.
    wait_health_documents(recorder, "gw8", after=command.at)
    assert recorder.on("data/gw8/stop") == []
    assert recorder.latest("data/gw8/one_state") == "running"
    assert recorder.on("commandavailable/gw8/stop") == []
    assert "remote control is on" not in host.log()


OUTAGE_MESSAGES = 10


def queued(manifest: Path, resource: str) -> int:
    """How many messages ``resource`` holds for the broker, as ``sghost status --json`` shows."""
    answer = run_cli("status", "--json", "-c", str(manifest))
    if answer.returncode != 0:
        return 0
    return int(json.loads(answer.stdout)["resources"][resource].get("queued", 0))


def test_broker_outage_of_10_s_health_resumes_and_nothing_counts_as_failed(fresh_mosquitto, tmp_path) -> None:
    broker = fresh_mosquitto
    manifest = tmp_path / "hostconfig.toml"
    manifest.write_text(manifest_text(broker, TWO, host="gw9"))
    host = HostProcess(manifest).start()
    try:
        before = Recorder(broker.host, broker.port).start()
        before.wait_for("data/gw9/two_state", "running", timeout=10)
        before.wait_for("resourceavailable/two/presence", "True")
        before.stop()
        broker.stop()
        host.wait_log("Disconnected from the broker")
        # The outage lasts until the counter has queued 10 messages (one a second) for the broker.
        assert wait_until(lambda: queued(manifest, "two") >= OUTAGE_MESSAGES, timeout=30, interval=0.5), (
            f"sghost status never showed {OUTAGE_MESSAGES} messages queued by two: {queued(manifest, 'two')}"
        )
        broker.start()
        after = Recorder(broker.host, broker.port).start()
        try:
            after.wait_for("resourceavailable/gw9/presence", "True", timeout=15)
            for name in ("one", "two"):
                after.wait_for(f"resourceavailable/{name}/presence", "True", timeout=15)
                after.wait_for(f"data/gw9/{name}_state", "running", timeout=5)
                after.wait_for(f"data/gw9/{name}_restarts", "0", timeout=5)
            before_count = len(after.on("data/two/count"))
            after.wait_until(lambda: len(after.on("data/two/count")) > before_count + 1, 5)
            after.wait_until(lambda: '"broker_connected":true' in (after.latest("data/gw9/health") or ""), 5)
            health = health_document(after, "gw9")
            assert health["broker_connected"] is True, "health resumes after the outage"
            assert {r["restarts"] for r in health["resources"].values()} == {0}
        finally:
            after.stop()
    finally:
        host.stop()


def test_a_meta_resource_that_stops_reading_is_replaced_and_never_blocks_the_supervisor(
    mosquitto, mqtt_recorder, host_factory
) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    # Ten resources and a health report every 0.1 s (the watchdog makes the loop tick
    # that often) fill the meta-resource's pipe within seconds once it stops reading.
    resources = "".join(f'[resources.r{n}]\ntype = "echoer"\nwatchdog = 0.4\n' for n in range(10))
    text = manifest_text(mosquitto, resources, host="gw13").replace("health_interval = 1.0", "health_interval = 0.1")
    host = host_factory(text)
    for n in range(10):
        recorder.wait_for(f"data/gw13/r{n}_state", "running", timeout=10)
    meta_pid = recorder.wait_until(lambda: health_document(recorder, "gw13").get("meta_pid"), 5)
    assert isinstance(meta_pid, int)
    os.kill(meta_pid, signal.SIGSTOP)  # alive, holding its pipe, reading nothing
    try:
        # A supervisor blocked on the full pipe would never get this far.
        line = host.wait_log(f"the meta-resource process (pid {meta_pid}) ", timeout=30)
        assert "killing it; a new one gets every state" in line
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(meta_pid, signal.SIGCONT)

    def replaced() -> int | None:
        pid = health_document(recorder, "gw13").get("meta_pid")
        return pid if pid not in (None, meta_pid) else None

    assert recorder.wait_until(replaced, 10), "a new meta-resource process publishes the health"
    resources = health_document(recorder, "gw13")["resources"]  # the supervisor's whole table, from the new one
    assert {name: entry["restarts"] for name, entry in resources.items()} == {f"r{n}": 0 for n in range(10)}, (
        "no resource was disturbed"
    )


def test_a_meta_resource_whose_loop_is_stuck_is_replaced_even_when_quiet(
    mosquitto, mqtt_recorder, host_factory
) -> None:
    # One resource: its pipe would take many minutes to fill; the missing heartbeat is what tells.
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(manifest_text(mosquitto, ONE_ECHOER, host="gw14"))
    recorder.wait_for("data/gw14/one_state", "running", timeout=10)
    meta_pid = recorder.wait_until(lambda: health_document(recorder, "gw14").get("meta_pid"), 5)
    assert isinstance(meta_pid, int)
    os.kill(meta_pid, signal.SIGSTOP)
    try:
        host.wait_log(f"the meta-resource process (pid {meta_pid}) has sent no heartbeat for", timeout=20)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(meta_pid, signal.SIGCONT)
    assert recorder.wait_until(lambda: health_document(recorder, "gw14").get("meta_pid") not in (None, meta_pid), 10)
    assert recorder.latest("data/gw14/one_restarts") == "0"


def test_a_killed_meta_resource_process_is_restarted_and_republishes(mosquitto, mqtt_recorder, host_factory) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host_factory(manifest_text(mosquitto, TWO, host="gw10"))
    recorder.wait_for("data/gw10/one_state", "running", timeout=10)
    meta_pid = recorder.wait_until(lambda: health_document(recorder, "gw10").get("meta_pid"), 5)
    assert isinstance(meta_pid, int), f"no meta_pid in {recorder.latest('data/gw10/health')}"
    os.kill(meta_pid, signal.SIGKILL)
    gone = recorder.wait_for("resourceavailable/gw10/presence", "False", timeout=5)
    recorder.wait_for("resourceavailable/gw10/presence", "True", after=gone.at, timeout=10)
    late = Recorder(mosquitto.host, mosquitto.port, "data/gw10/#").start()
    try:
        late.wait_for("data/gw10/one_state", "running", timeout=5)

        def new_meta_pid() -> int | None:
            document = health_document(late, "gw10")
            return document.get("meta_pid") if document.get("meta_pid") != meta_pid else None

        assert late.wait_until(new_meta_pid, 5), "a new meta-resource process publishes the health again"
    finally:
        late.stop()
    assert recorder.latest("data/gw10/one_restarts") == "0", "the resources were not disturbed"


def test_a_resource_added_back_while_still_stopping_restarts_after_the_old_process_is_gone(
    mosquitto, mqtt_recorder, host_factory, tmp_path
) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    slow = '[resources.slow]\ntype = "hanger"\nstop_timeout = 2.0\n'
    host = host_factory(manifest_text(mosquitto, slow, host="gw11"))
    recorder.wait_for("data/gw11/slow_state", "running", timeout=10)
    recorder.wait_for("resourceavailable/slow/presence", "True")
    recorder.publish("command/slow/hang", "now")
    host.wait_log("hanging forever")
    manifest = tmp_path / "hostconfig.toml"
    manifest.write_text(manifest_text(mosquitto, "", host="gw11"))
    host.signal(signal.SIGHUP)
    stopping = recorder.wait_for("data/gw11/slow_state", "stopping")
    manifest.write_text(manifest_text(mosquitto, slow, host="gw11"))
    host.signal(signal.SIGHUP)
    host.wait_log("1 added, 0 removed")
    killed = host.wait_log("did not stop within 2 s: SIGKILL")
    restarting = recorder.wait_for("data/gw11/slow_state", "starting", after=stopping.at, timeout=10)
    recorder.wait_for("data/gw11/slow_state", "running", after=restarting.at, timeout=10)
    started = host.wait_log("[slow] started", count=2)
    assert host.lines.index(killed) < host.lines.index(started), "the new process starts after the old one is gone"
    present = recorder.wait_until(lambda: recorder.latest("resourceavailable/slow/presence") == "True", 5)
    assert present, "the old process's will must not outlive the new process's presence (old killed first)"
    assert recorder.on("dataavailable/gw11/slow_state")[-1].payload == "True", "its health topics were not cleared"
