"""What the certificate check before connecting costs a resource process: time per check, memory.

Makes a CA and a client identity with ``sghost certs`` in a temporary directory, then
runs ``inspect_directory`` (what each resource process does before it connects) many
times, in a process that has already imported paho (and so ssl), as a resource has.
Prints the figures; copy them into docs/benchmarks.md.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client  # noqa: F401  (a resource process has ssl loaded through paho)
import psutil

from sghost.cli import certs
from sghost.config.certificates import inspect_directory

ROUNDS = 200


def main() -> int:
    with tempfile.TemporaryDirectory() as temporary:
        base = Path(temporary)
        certs.init_ca(base)
        directory = certs.issue_certificate(base, "bench").directory
        process = psutil.Process()
        before = process.memory_full_info().uss
        assert inspect_directory(directory) == []
        after_first = process.memory_full_info().uss
        timings = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            inspect_directory(directory)
            timings.append(time.perf_counter() - started)
        print(f"inspect_directory: median {statistics.median(timings) * 1000:.2f} ms, "
              f"max {max(timings) * 1000:.2f} ms over {ROUNDS} runs")
        print(f"USS after the first check: +{(after_first - before) / 2**20:.2f} MiB "
              f"(after {ROUNDS} more: +{(process.memory_full_info().uss - before) / 2**20:.2f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
