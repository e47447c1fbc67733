"""sghost.host.procstat checked against psutil, the reference it stands in for in the supervisor."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from sghost.host import procstat


@pytest.fixture
def busy_child() -> subprocess.Popen[bytes]:
    """A process that burns some CPU and holds some memory, then waits to be read."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys\nb = bytearray(8 << 20)\nsum(range(3_000_000))\nprint('ready', flush=True)\n"
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"  # its figures stay put from here
    yield child
    child.communicate(timeout=10)


def test_a_process_reads_as_psutil_reads_it(busy_child: subprocess.Popen[bytes]) -> None:
    reference = psutil.Process(busy_child.pid)
    mine = procstat.ProcessStat(busy_child.pid)
    times = reference.cpu_times()
    assert mine.cpu_seconds() == pytest.approx(times.user + times.system, abs=0.02)
    assert mine.start_time() == pytest.approx(reference.create_time(), abs=0.05)
    assert mine.rss() == pytest.approx(reference.memory_info().rss, rel=0.02)


def test_the_host_reads_as_psutil_reads_it() -> None:
    memory = psutil.virtual_memory()
    mine = procstat.host_memory()
    assert mine.total == memory.total
    assert mine.percent == pytest.approx(memory.percent, abs=2.0)


def test_a_gone_process_raises_oserror() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(OSError):
        procstat.ProcessStat(child.pid).rss()
