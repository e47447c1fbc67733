"""A resource process sleeps until it has work, and still wakes for everything it must do.

The child's main loop (sghost/process/child.py) blocks until a message arrives or the
next due thing (periodic task, heartbeat, a look at its counters); SIGTERM, a request
from the supervisor and a failed worker thread wake it at once.
"""

from __future__ import annotations

import os
import signal

import psutil

from hostharness import manifest_text, resource_pid, sghost_env, wait_until
from sghost.testing import Received, Recorder


def first_error(recorder: Recorder, topic: str, text: str) -> Received | None:
    """The first message on ``topic`` that contains ``text``, waited for up to 10 s."""
    return recorder.wait_until(lambda: next((m for m in recorder.on(topic) if text in m.payload), None), 10)


def test_sigterm_to_an_idle_resource_stops_it_and_it_says_goodbye(mosquitto, mqtt_recorder, host_factory) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host = host_factory(manifest_text(mosquitto, '[resources.idle]\ntype = "taxisign"\n', host="ih"))
    recorder.wait_for("data/ih/idle_state", "running", timeout=10)
    up = recorder.wait_for("resourceavailable/idle/presence", "True")
    pid = resource_pid(recorder, "ih", "idle")
    os.kill(pid, signal.SIGTERM)
    recorder.wait_for("resourceavailable/idle/presence", "False", after=up.at)
    assert wait_until(lambda: not psutil.pid_exists(pid), 5), "the resource process has exited"
    assert "Traceback" not in host.log(), host.log()


def test_periodic_tasks_run_while_nothing_else_happens(mosquitto, mqtt_recorder, host_factory) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    resources = '[resources.ticker]\ntype = "counter"\n[resources.ticker.settings]\ninterval = 0.2\n'
    host_factory(manifest_text(mosquitto, resources, host="th"), env=sghost_env())
    for count in ("1", "2", "3", "10"):
        recorder.wait_for("data/ticker/count", count, timeout=10)


def test_a_failed_worker_thread_ends_an_idle_resource_with_its_error(mosquitto, mqtt_recorder, host_factory) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host_factory(manifest_text(mosquitto, '[resources.tf]\ntype = "threadfail"\n', host="fh"), env=sghost_env())
    recorder.wait_for("data/fh/tf_state", "running", timeout=10)
    recorder.wait_for("resourceavailable/tf/presence", "True")
    pid = resource_pid(recorder, "fh", "tf")
    recorder.publish("command/tf/fail", "now")
    error = first_error(recorder, "data/fh/tf_error", "RuntimeError: worker failed on purpose")
    assert error is not None, [m.payload for m in recorder.on("data/fh/tf_error")]
    resource_pid(recorder, "fh", "tf", other_than=pid)  # restarted


def test_the_watchdog_still_catches_a_hung_callback_of_a_sleeping_loop(mosquitto, mqtt_recorder, host_factory) -> None:
    recorder: Recorder = mqtt_recorder(mosquitto)
    host_factory(
        manifest_text(mosquitto, '[resources.hung]\ntype = "hanger"\nwatchdog = 1.0\n', host="wh"), env=sghost_env()
    )
    recorder.wait_for("data/wh/hung_state", "running", timeout=10)
    recorder.wait_for("resourceavailable/hung/presence", "True")
    recorder.publish("command/hung/hang", "now")
    error = first_error(recorder, "data/wh/hung_error", "watchdog")
    assert error is not None, [m.payload for m in recorder.on("data/wh/hung_error")]
    recorder.wait_for("data/wh/hung_state", "running", after=error.at, timeout=10)
