"""The taxi sign example of docs/sgframework.md runs as written, against a private broker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sghost.host.broker import MosquittoBroker
from sghost.testing import Recorder

DOC = Path(__file__).resolve().parent.parent / "docs" / "sgframework.md"


def example(filename: str) -> str:
    """The fenced Python block of the doc whose first line is ``# <filename>``."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    found = [block for block in blocks if block.startswith(f"# {filename}\n")]
    assert len(found) == 1, f"{DOC} has {len(found)} blocks for {filename}"
    return found[0]


def signal_dispositions(pid: int) -> str:
    """The signal lines of /proc/<pid>/status: which signals the process blocks, ignores, catches, has pending."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    wanted = ("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")
    return ", ".join(line.replace("\t", " ") for line in lines if line.startswith(wanted))


def test_taxi_sign_example_runs_as_written(
    tmp_path: Path, mosquitto: MosquittoBroker, mqtt_recorder: Callable[..., Recorder]
) -> None:
    for name in ("taxisign_resource.py", "taxisign_app.py"):
        (tmp_path / name).write_text(example(name))
    env = {**os.environ, "SG_BROKER_HOST": mosquitto.host, "SG_BROKER_PORT": str(mosquitto.port)}
    env["PYTHONFAULTHANDLER"] = "1"
    recorder = mqtt_recorder(mosquitto)
    resource = subprocess.Popen(
        [sys.executable, "taxisign_resource.py"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        recorder.wait_for("resourceavailable/taxisignservice/presence", "True", timeout=10)
        recorder.wait_for("commandavailable/taxisignservice/state", "True")
        recorder.wait_for("data/taxisignservice/state", "False")  # the default value
        app = subprocess.run(
            [sys.executable, "taxisign_app.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
        )
        assert app.returncode == 0, app.stderr
        assert app.stdout.splitlines() == ["Taxi sign state is now True", "Taxi sign state is now False"]
        resource.send_signal(signal.SIGINT)  # Ctrl-C: the example stops cleanly
        try:
            out, err = resource.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            signals = signal_dispositions(resource.pid)
            resource.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack to stderr
            out, err = resource.communicate(timeout=10)
            pytest.fail(f"the example did not stop on Ctrl-C within 10 s ({signals}); its stacks:\n{err[-6000:]}")
    finally:
        if resource.poll() is None:
            resource.kill()
            resource.wait(5)
    assert resource.returncode == 0, err
    recorder.wait_for("resourceavailable/taxisignservice/presence", "False")
    assert err.index("Turning on my taxi sign.") < err.index("Turning off my taxi sign.")
    assert "command/taxisignservice/state" in out  # the ascii art printed at start
    assert [m.payload for m in recorder.on("command/taxisignservice/state")] == ["True", "False"]


@pytest.mark.parametrize("name", ["taxisign_resource.py", "taxisign_app.py"])
def test_examples_default_to_localhost_1883(name: str) -> None:
    code = example(name)
    assert 'os.environ.get("SG_BROKER_HOST", "localhost")' in code
    assert 'os.environ.get("SG_BROKER_PORT", "1883")' in code
