"""One line describing the machine a benchmark ran on, for docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

import paho.mqtt
import psutil

from sghost.host.broker import find_mosquitto


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def mosquitto_version() -> str:
    executable = find_mosquitto()
    if executable is None:
        return "not installed"
    try:
        output = subprocess.run([executable, "-h"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    found = re.search(r"mosquitto version (\S+)", output)
    return found.group(1) if found else "unknown"


def describe_machine() -> str:
    return (
        f"{os.cpu_count()} CPU ({cpu_model()}), {psutil.virtual_memory().total / 2**30:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"paho-mqtt {paho.mqtt.__version__}, psutil {psutil.__version__}, mosquitto {mosquitto_version()}"
    )
