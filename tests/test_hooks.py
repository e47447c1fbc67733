"""Event hooks end to end: a real sghost runs real programs from [hooks] on state changes."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from pathlib import Path

import psutil

from hostharness import manifest_text, resource_pid, wait_until
from sghost.testing import Recorder

RECORD = """#!/bin/sh
echo "$SGHOST_RESOURCE $SGHOST_PREVIOUS_STATE>$SGHOST_STATE restarts=$SGHOST_RESTARTS host=$SGHOST_HOST \
error=$SGHOST_ERROR" >> "{log}"
"""


def script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_hooks_see_each_state_change_and_restart_in_their_environment(
    mosquitto, mqtt_recorder, host_factory, tmp_path: Path
) -> None:
    states, restarts = tmp_path / "states.log", tmp_path / "restarts.log"
    hook = script(tmp_path / "on_state.sh", RECORD.format(log=states))
    on_restart = script(tmp_path / "on_restart.sh", RECORD.format(log=restarts))
    hooks = f'[hooks]\non_state = ["{hook}"]\non_restart = ["{on_restart}"]\n'
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(manifest_text(mosquitto, '[resources.alpha]\ntype = "echoer"\n' + hooks, host="gw"))
    first = resource_pid(recorder, "gw", "alpha")
    assert wait_until(lambda: len(lines(states)) >= 2, timeout=10), host.log()
    assert sorted(lines(states)) == [
        "alpha starting>running restarts=0 host=gw error=",
        "alpha stopped>starting restarts=0 host=gw error=",
    ]
    assert lines(restarts) == []

    os.kill(first, signal.SIGKILL)
    resource_pid(recorder, "gw", "alpha", other_than=first)
    assert wait_until(lambda: lines(restarts), timeout=10), host.log()
    # From running (it had run STABLE_AFTER) or backoff (a quick failure waits first).
    [restart] = lines(restarts)
    assert restart.startswith("alpha ") and restart.endswith(">starting restarts=1 host=gw error=killed by SIGKILL")
    assert restart in lines(states)


def test_a_hook_that_hangs_is_ended_and_supervision_goes_on(
    mosquitto, mqtt_recorder, host_factory, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    # Ignores SIGTERM, as a stuck notifier might: it needs the SIGKILL.
    hanging = script(tmp_path / "hang.sh", f"#!/bin/sh\ntrap '' TERM\necho $$ >> {pids}\nwhile :; do sleep 1; done\n")
    hooks = f'[hooks]\non_state = ["{hanging}"]\nhook_timeout = 0.5\n'
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(manifest_text(mosquitto, '[resources.alpha]\ntype = "echoer"\n' + hooks))
    recorder.wait_for("data/sghost/alpha_state", "running", timeout=10)  # not held up by the hanging hooks
    # running says setup is done, not that the command is subscribed: presence comes after the SUBSCRIBE
    recorder.wait_for("resourceavailable/alpha/presence", "True", timeout=10)
    recorder.publish("command/alpha/ping", "True")
    recorder.wait_for("data/alpha/ping", "True")
    host.wait_log("[alpha] hook on_state (pid", timeout=10)
    host.wait_log("still running after hook_timeout 0.5 s: SIGTERM", timeout=10)
    assert wait_until(lambda: len(lines(pids)) >= 2, timeout=10)
    hook_pids = [int(pid) for pid in lines(pids)]

    def gone() -> bool:
        return not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                       for pid in hook_pids)

    assert wait_until(gone, timeout=10), f"hooks {hook_pids} still alive:\n{host.log()}"
    host.wait_log("ended after its timeout", timeout=5)


def test_a_crash_loop_runs_on_fatal_once_per_entry_into_fatal(mosquitto, host_factory, tmp_path: Path) -> None:
    fatal = tmp_path / "fatal.log"
    on_fatal = script(tmp_path / "on_fatal.sh", RECORD.format(log=fatal))
    hooks = f'[hooks]\non_fatal = ["{on_fatal}"]\non_backoff = ["/bin/false"]\n'
    resources = '[resources.crash]\ntype = "crasher"\nmax_restarts = 2\n'
    host = host_factory(manifest_text(mosquitto, resources + hooks))
    host.wait_log("[crash] fatal:", timeout=15, count=2)
    host.wait_log("[crash] hook on_backoff exited with code 1", timeout=5)
    assert host.stop() == 0  # sghost lets running hooks finish before it exits
    entries = host.log().count("[crash] fatal:")
    recorded = lines(fatal)
    assert len(recorded) == entries, (recorded, host.log())
    # Failures count only once the meta-resource is connected, so the first fatal's restarts vary.
    expected = r"crash starting>fatal restarts=\d+ host=sghost error=plugin error: RuntimeError: boom at start"
    assert re.fullmatch(expected, recorded[0]), recorded[0]
    assert all(">fatal " in line for line in recorded)


def test_a_hook_that_cannot_start_is_logged_and_the_resource_runs(
    mosquitto, mqtt_recorder, host_factory, tmp_path: Path
) -> None:
    hook = script(tmp_path / "broken.sh", "#!/nonexistent/interpreter\n")  # executable, but exec fails
    recorder: Recorder = mqtt_recorder(mosquitto)
    resources = f'[resources.alpha]\ntype = "echoer"\n[hooks]\non_state = ["{hook}"]\n'
    host = host_factory(manifest_text(mosquitto, resources))
    recorder.wait_for("data/sghost/alpha_state", "running", timeout=10)
    host.wait_log(f"[alpha] hook on_state: cannot run {hook}", timeout=5)


def test_one_run_per_resource_and_state_at_a_time_and_the_rest_is_logged(tmp_path: Path, caplog) -> None:
    """The runner on its own, driven as the supervisor's loop drives it (real processes, real timers)."""
    from sghost.config.integrations import HooksConfig
    from sghost.host.hooks import HookRunner
    from sghost.host.timers import Timers

    runs = tmp_path / "runs"
    hook = script(tmp_path / "slow.sh", f'#!/bin/sh\necho "$SGHOST_STATE" >> {runs}\nexec sleep 30\n')
    timers = Timers()
    runner = HookRunner(HooksConfig(on_state=(str(hook),), hook_timeout=1.0), "gw", timers)
    runner.state_changed("alpha", "stopped", "", 0)  # just added: nothing has happened yet
    assert runner.running == 0
    for state in ("starting", "running", "starting", "running"):
        runner.state_changed("alpha", state, "", 0)
    assert runner.running == 2  # one per state; the second starting and running were skipped
    assert caplog.text.count("is still running") == 2

    def drive() -> bool:
        timers.run_due()
        return runner.running == 0

    assert wait_until(drive, timeout=10, interval=0.05), "the hooks were not ended after hook_timeout"
    assert sorted(lines(runs)) == ["running", "starting"]
    assert "ended after its timeout" in caplog.text
    assert "2 change(s) skipped" not in caplog.text and "1 change(s) skipped while it ran" in caplog.text


class VirtualTime:
    """The hook runner's clock and timers, advanced by the test: what is asserted is when sghost acts, not how fast."""

    def __init__(self) -> None:
        self.now = 0.0
        self.due: list[tuple[float, int, object]] = []

    def monotonic(self) -> float:
        return self.now

    def call_later(self, delay: float, callback) -> None:
        self.due.append((self.now + delay, len(self.due), callback))

    def run_until(self, limit: float) -> None:
        """Run every timer due up to ``limit`` seconds, in order, moving the clock to each."""
        while self.due:
            self.due.sort(key=lambda entry: entry[:2])
            if self.due[0][0] > limit:
                break
            self.now, _order, callback = self.due.pop(0)
            callback()
        self.now = max(self.now, limit)


def test_a_hook_that_ignores_sigterm_is_gone_within_hook_timeout_plus_one_second(
    tmp_path: Path, monkeypatch
) -> None:
    from types import SimpleNamespace

    from sghost.config.integrations import HooksConfig
    from sghost.host import hooks

    pid_file = tmp_path / "pid"
    stubborn = script(tmp_path / "stubborn.sh", f"#!/bin/sh\ntrap '' TERM\necho $$ > {pid_file}.tmp\n"
                      f"mv {pid_file}.tmp {pid_file}\nwhile :; do sleep 0.05; done\n")
    clock = VirtualTime()
    monkeypatch.setattr(hooks, "time", SimpleNamespace(monotonic=clock.monotonic, sleep=lambda _: None))
    timeout = 2.0
    runner = hooks.HookRunner(HooksConfig(on_state=(str(stubborn),), hook_timeout=timeout), "gw", clock)
    runner.state_changed("alpha", "stopped", "", 0)
    runner.state_changed("alpha", "starting", "", 0)
    assert wait_until(pid_file.exists, timeout=10), "the hook did not start"
    pid = int(pid_file.read_text())

    def gone() -> bool:
        return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

    try:
        clock.run_until(timeout + 1.0)
        assert wait_until(gone, timeout=10), (
            f"the hook (pid {pid}) ignoring SIGTERM was not killed within hook_timeout {timeout} s + 1 s"
        )
        clock.run_until(timeout + 1.5)  # the runner's next look reaps it
        assert runner.running == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # whatever happened, no hook outlives the test
