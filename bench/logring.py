"""The cost of keeping every resource's output in the supervisor (sghost.host.logring); prints figures.

Run: .venv/bin/python bench/logring.py
"""

from __future__ import annotations

import time
import tracemalloc

from machine import describe_machine

from sghost.host.logring import MAX_BYTES, MAX_LINES, LogBook

LINES = 200_000
TYPICAL = "INFO sgframework.taxisign: Connected to the broker at 127.0.0.1:1884 (a typical log line)"


def per_line_microseconds(text: str) -> float:
    book = LogBook()
    started = time.perf_counter()
    for _ in range(LINES):
        book.add("taxisign", "stderr", text)
    return (time.perf_counter() - started) / LINES * 1e6


def full_ring_kib(text: str, resources: int) -> float:
    tracemalloc.start()
    book = LogBook()
    for number in range(resources):
        for _ in range(MAX_LINES * 2):
            book.add(f"resource{number}", "stdout", text)
    current, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return current / 1024


def main() -> None:
    print(describe_machine())
    print(f"bounds: {MAX_LINES} lines, {MAX_BYTES // 1024} KiB per resource (text + 200 B per line)")
    print(f"add one {len(TYPICAL)}-character line: {per_line_microseconds(TYPICAL):.2f} us")
    print(f"add one 4000-character line: {per_line_microseconds('x' * 4000):.2f} us")
    for resources in (1, 20):
        kib = full_ring_kib(TYPICAL, resources)
        print(f"{resources} full ring(s) of {len(TYPICAL)}-character lines: {kib:.0f} KiB")
    print(f"1 full ring of 4000-character lines: {full_ring_kib('x' * 4000, 1):.0f} KiB")


if __name__ == "__main__":
    main()
