"""How soon sghost reacts, in figures the tests no longer assert: the watchdog's kill and the fleet view.

- watchdog: a resource with ``watchdog = 2.0`` hangs on command; the time from the command
  (as a subscriber sees it) to the restart count 1 on the host's topic, with the error
  ``watchdog: no heartbeat for 2 s``. Goal: within the watchdog + 1 s (docs/health.md).
- fleet: ``sghost status --all``'s collection of 120 hosts' retained health; it ends on the
  end of the retained messages, not at its timeout (5 s by default). Goal: well under 1 s.

Run: .venv/bin/python bench/reaction.py
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from machine import describe_machine

from sghost.cli.fleet import collect_fleet
from sghost.host.broker import MosquittoBroker
from sghost.testing import HostProcess, Recorder, manifest_text, sghost_environment

WATCHDOG = 2.0
HANGS = 5
FLEET_HOSTS = 120
FLEET_ROUNDS = 10
PLUGIN_DIR = Path(__file__).resolve().parent.parent / "tests" / "plugins"


def watchdog_reaction(broker: MosquittoBroker, workdir: Path) -> list[float]:
    """Seconds from a hang command to the restart it causes, once for each of ``HANGS`` fresh hosts.

    A fresh host each time: the hung callback never acknowledged its QoS 1 command, so the broker
    gives it again to the restarted process, which hangs again (at least once delivery).
    """
    pythonpath = os.pathsep.join(filter(None, [str(PLUGIN_DIR), os.environ.get("PYTHONPATH", "")]))
    env = sghost_environment(PYTHONPATH=pythonpath, SGHOST_PLUGINS="sghost_test_plugins")
    reactions = []
    for number in range(HANGS):
        host_name, name = f"benchwd{number}", f"hung{number}"
        manifest = workdir / f"{host_name}.toml"
        manifest.write_text(manifest_text(
            broker, f'[resources.{name}]\ntype = "hanger"\nwatchdog = {WATCHDOG}\n', host=host_name))
        recorder = Recorder(broker.host, broker.port, [f"data/{host_name}/#", f"command/{name}/#",
                                                        f"resourceavailable/{name}/#"]).start()
        host = HostProcess(manifest, env).start()
        try:
            recorder.wait_for(f"resourceavailable/{name}/presence", "True", timeout=30)
            recorder.publish(f"command/{name}/hang", "now")
            hang = recorder.wait_for(f"command/{name}/hang", "now")
            restarted = recorder.wait_for(f"data/{host_name}/{name}_restarts", "1", timeout=30)
            error = recorder.latest(f"data/{host_name}/{name}_error") or ""
            if not error.startswith("watchdog"):
                raise RuntimeError(f"restarted for another reason: {error}\n{host.log()}")
            reactions.append(restarted.at - hang.at)
        finally:
            host.stop()
            recorder.stop()
    return reactions


def fleet_collection(broker: MosquittoBroker) -> list[float]:
    """Seconds ``collect_fleet`` takes for ``FLEET_HOSTS`` hosts, over ``FLEET_ROUNDS`` rounds."""
    publisher = Recorder(broker.host, broker.port, "bench/none").start()
    try:
        for number in range(FLEET_HOSTS):
            name = f"gw{number:03d}"
            document = {"host": name, "version": "0.1.0", "uptime": 60, "broker_connected": True, "resources": {}}
            publisher.publish(f"data/{name}/health", json.dumps(document), retain=True)
            publisher.publish(f"resourceavailable/{name}/presence", "True", retain=True)
    finally:
        publisher.stop()
    durations = []
    for _ in range(FLEET_ROUNDS):
        started = time.perf_counter()
        fleet = collect_fleet(broker.host, broker.port, timeout=5)
        durations.append(time.perf_counter() - started)
        if len(fleet) != FLEET_HOSTS:
            raise RuntimeError(f"collect_fleet found {len(fleet)} hosts, not {FLEET_HOSTS}")
    return durations


def show(name: str, values: list[float], goal: str) -> None:
    print(f"  {name}: median {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms "
          f"over {len(values)}   [goal {goal}]", flush=True)


def main() -> None:
    print(describe_machine())
    with tempfile.TemporaryDirectory(prefix="sghost-bench-reaction-") as workdir, private_broker() as broker:
        show(f"watchdog {WATCHDOG:g} s: hang -> restart", watchdog_reaction(broker, Path(workdir)),
             f"<= {(WATCHDOG + 1) * 1000:.0f} ms")
    with private_broker() as broker:  # no other host's retained health
        show(f"fleet: collect {FLEET_HOSTS} hosts", fleet_collection(broker), "well under the 5 s timeout")


@contextlib.contextmanager
def private_broker() -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.cleanup()


if __name__ == "__main__":
    main()
