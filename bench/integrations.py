"""What the integrations cost the supervisor's loop: rendering the metrics, and starting one hook.

Prints figures to copy into docs/benchmarks.md; writes nothing.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from sghost.config.integrations import HooksConfig
from sghost.health.metrics import render, write_atomically
from sghost.host.hooks import HookRunner
from sghost.host.timers import Timers

RESOURCES = 50
ROUNDS = 200
HOOK_RUNS = 50


def snapshot() -> dict:
    resources = {f"res{i}": {"state": "running", "restarts": i, "pid": 1000 + i, "error": "", "dropped": 0,
                             "refused": 0} for i in range(RESOURCES)}
    processes = {name: {"cpu_seconds": 1.5, "memory_bytes": 20 << 20, "start_time": 1.7e9} for name in resources}
    return {"host": "gw", "version": "0", "broker_connected": True, "resources": resources, "processes": processes}


def bench_metrics() -> None:
    document = snapshot()
    with tempfile.TemporaryDirectory() as directory:
        target = Path(directory) / "sghost.prom"
        times = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            write_atomically(target, render(document))
            times.append(time.perf_counter() - started)
        size = target.stat().st_size
    print(f"metrics: render + atomic write, {RESOURCES} resources ({size} bytes): "
          f"median {statistics.median(times) * 1e3:.2f} ms, max {max(times) * 1e3:.2f} ms")


def bench_hook_start() -> None:
    timers = Timers()
    runner = HookRunner(HooksConfig(on_state=("/bin/true",)), "gw", timers)
    runner.state_changed("res", "stopped", "", 0)
    times = []
    for index in range(HOOK_RUNS):
        state = "starting" if index % 2 == 0 else "running"
        started = time.perf_counter()
        runner.state_changed("res", state, "", 0)
        times.append(time.perf_counter() - started)
        while runner.running:
            time.sleep(0.01)  # bench only: wait for the hook to end so that every run is started
            timers.run_due()
    print(f"hooks: time the loop spends starting one hook (Popen, /bin/true): "
          f"median {statistics.median(times) * 1e3:.2f} ms, max {max(times) * 1e3:.2f} ms ({HOOK_RUNS} runs)")


if __name__ == "__main__":
    subprocess.run(["uname", "-srm"], check=False)
    bench_metrics()
    bench_hook_start()
