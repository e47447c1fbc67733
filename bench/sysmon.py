"""Benchmark the ``sysmon`` resource: its CPU at a 5 s interval, and how little an idle box sends.

Run: ``.venv/bin/python bench/sysmon.py`` (``--window 60`` by default; ``--quick`` for 15 s).
Starts a private mosquitto on a free 127.0.0.1 port and a real ``sghost start`` with two
resources: ``sysmon`` (interval 5 s, default dead bands) and an idle ``taxisign`` as the
baseline of a resource process that does nothing. Prints, for each, the CPU time (user +
system) over the window divided by the wall time, in % of one core, the messages the sysmon
resource sent during the window, and the cost of one sample measured in this process.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machine import describe_machine  # noqa: E402

from sghost.host.broker import MosquittoBroker  # noqa: E402
from sghost.testing import Recorder  # noqa: E402

INTERVAL = 5.0
GOAL_PERCENT = 0.2
SETTLE = 3.0
HOST = "bench"


def manifest(broker: MosquittoBroker) -> str:
    return (
        f'[host]\nname = "{HOST}"\nhealth_interval = 5.0\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {broker.port}\n'
        f'[resources.sysmon]\ntype = "sysmon"\n[resources.sysmon.settings]\ninterval = {INTERVAL}\n'
        '[resources.taxisign]\ntype = "taxisign"\n'
    )


def resource_pid(recorder: Recorder, name: str) -> int:
    topic = f"data/{HOST}/{name}_pid"
    found = recorder.wait_until(lambda: (recorder.latest(topic) or "0") != "0", 20)
    if not found:
        raise SystemExit(f"no pid for {name} on {topic}")
    return int(recorder.latest(topic) or "0")


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def sample_cost(repeats: int = 200) -> float:
    """Milliseconds for one sample and its dead-band filtering, in this process."""
    from sghost_sysmon.monitor import DeadBandFilter, Sampler, default_temperature_reader
    from sghost_sysmon.settings import SysmonSettings

    sampler = Sampler(SysmonSettings(), logging.getLogger("bench"), default_temperature_reader())
    bands = DeadBandFilter(SysmonSettings().deadbands, sampler.sample())
    started = time.process_time()
    for _ in range(repeats):
        bands.changed(sampler.sample())
    return (time.process_time() - started) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=60.0, help="seconds of measurement (default 60)")
    parser.add_argument("--quick", action="store_true", help="a 15 s window")
    args = parser.parse_args()
    window = 15.0 if args.quick else args.window
    print(describe_machine())
    broker = MosquittoBroker()
    broker.start()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "hostconfig.toml"
        path.write_text(manifest(broker))
        recorder = Recorder(broker.host, broker.port).start()
        host = subprocess.Popen([sys.executable, "-m", "sghost", "start", "-c", str(path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            pids = {name: resource_pid(recorder, name) for name in ("sysmon", "taxisign")}
            recorder.wait_for("resourceavailable/sysmon/presence", "True", timeout=20)
            time.sleep(SETTLE)  # let start-up work (imports, first sample, announcements) finish
            processes = {name: psutil.Process(pid) for name, pid in pids.items()}
            before = {name: cpu_seconds(process) for name, process in processes.items()}
            sent_before = len(recorder.messages)
            started = time.monotonic()
            time.sleep(window)  # the measurement window
            wall = time.monotonic() - started
            after = {name: cpu_seconds(process) for name, process in processes.items()}
            sent = Counter(m.topic for m in recorder.messages[sent_before:] if m.topic.startswith("data/sysmon/"))
        finally:
            host.terminate()
            host.wait(20)
            recorder.stop()
            broker.cleanup()
    percent = {name: (after[name] - before[name]) / wall * 100 for name in processes}
    verdict = "PASS" if percent["sysmon"] <= GOAL_PERCENT else "FAIL"
    print(f"window {wall:.1f} s, interval {INTERVAL:g} s, default dead bands")
    print(f"sysmon resource process CPU: {percent['sysmon']:.3f} % of one core (goal <= {GOAL_PERCENT} %): {verdict}")
    print(f"idle taxisign resource process CPU (baseline): {percent['taxisign']:.3f} % of one core")
    total = sum(sent.values())
    print(f"sysmon messages sent: {total} in {wall:.0f} s ({total / wall * 60:.1f} per minute)")
    print("  by signal: " + ", ".join(f"{topic.rsplit('/', 1)[1]} {count}" for topic, count in sent.most_common()))
    print(f"one sample + dead bands, in-process: {sample_cost():.3f} ms CPU")


if __name__ == "__main__":
    main()
