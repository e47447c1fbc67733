"""Benchmark fleet deployments on one gateway (issue 18).

Run: ``.venv/bin/python bench/deploy.py`` (``--quick``: fewer rounds). A gateway
``sghost start`` with an embedded mosquitto on a free 127.0.0.1 port and
``[deploy]`` on; documents are signed here and published on its
``command/<host>/deploy``; a raw paho subscriber times the progress on
``data/<host>/deployment``. ``verify_seconds`` is subtracted: it is the
operator's choice, not sghost's cost. It prints:

- push -> ``successful`` for a one-resource change of a 1-resource manifest;
- the same for a 50-resource manifest with one resource changed;
- the disk used per generation (manifest-only), and by pip for one plugin wheel.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine

from sghost.deploy import document
from sghost.host.broker import free_port
from sghost.testing import Recorder

ROOT = Path(__file__).resolve().parent.parent
HOST = "benchgw"
VERIFY = 0.5


def manifest(port: int, count: int, setting: int) -> str:
    resources = "".join(
        f'[resources.r{index}]\ntype = "echoer"\n' + (f"[resources.r{index}.settings]\nround = {setting}\n"
                                                      if index == 0 else "")
        for index in range(count)
    )
    return (f'[host]\nname = "{HOST}"\nhealth_interval = 5.0\n[broker]\nhost = "127.0.0.1"\nport = {port}\n'
            f'embedded = true\n[deploy]\nenabled = true\ntrusted_keys = ["fleet.pub"]\nverify_seconds = {VERIFY}\n'
            f'state_dir = "state"\n{resources}')


def directory_bytes(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def run_gateway(workdir: Path, count: int, rounds: int) -> tuple[list[float], int]:
    """Push ``rounds`` one-resource changes to a ``count``-resource gateway; seconds to successful, bytes/generation."""
    key = Ed25519PrivateKey.generate()
    (workdir / "fleet.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    port = free_port()
    path = workdir / "gw.toml"
    path.write_text(manifest(port, count, 0))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests" / "plugins"), SGHOST_PLUGINS="sghost_test_plugins")
    process = subprocess.Popen([sys.executable, "-m", "sghost", "start", "-c", str(path)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        recorder = None
        deadline = time.monotonic() + 30
        while recorder is None:
            try:
                recorder = Recorder("127.0.0.1", port, [f"data/{HOST}/#"]).start()
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)  # the embedded broker is starting
        recorder.wait_until(lambda: recorder.latest(f"data/{HOST}/r{count - 1}_state") == "running", 60)
        times = []
        for sequence in range(1, rounds + 1):
            signed = document.sign({"host": HOST, "sequence": sequence, "manifest": manifest(port, count, sequence),
                                    "requirements": []}, key)
            pushed = time.monotonic()
            recorder.publish(f"command/{HOST}/deploy", signed.to_json(), retain=True)

            def done(deployment_id: str = signed.id) -> object:
                for message in recorder.on(f"data/{HOST}/deployment"):
                    value = json.loads(message.payload)
                    if value["id"] == deployment_id and value["state"] in ("successful", "rolled-back", "failed"):
                        return message
                return None

            message = recorder.wait_until(done, 60)
            if message is None or json.loads(message.payload)["state"] != "successful":  # type: ignore[attr-defined]
                raise RuntimeError(f"round {sequence} did not succeed")
            times.append(message.at - pushed - VERIFY)  # type: ignore[attr-defined]
        recorder.stop()
        # the newest generation (older ones beyond keep_generations are pruned as rounds go by)
        generations = [entry for entry in (workdir / "state" / "generations").iterdir() if entry.name.isdigit()]
        return times, directory_bytes(max(generations, key=lambda entry: int(entry.name)))
    finally:
        process.terminate()
        process.wait(30)


def wheel_bytes(workdir: Path) -> int:
    """Bytes of one installed generation site for a one-module plugin wheel (the pip --target overhead)."""
    project = workdir / "demo"
    (project / "sghost_demo").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61", "wheel"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "sghost-demo"\nversion = "0.1"\n[tool.setuptools]\npackages = ["sghost_demo"]\n')
    (project / "sghost_demo" / "__init__.py").write_text("VERSION = '0.1'\n")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--isolated", "--no-build-isolation", "--no-deps",
                    "--no-index", "-w", str(workdir / "wheels"), str(project)], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--isolated", "--no-index", "--no-deps",
                    "--find-links", str(workdir / "wheels"), "--target", str(workdir / "site"), "sghost-demo"],
                   check=True, capture_output=True)
    return directory_bytes(workdir / "site")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds = 3 if args.quick else 10
    print(describe_machine())
    for count in (1, 50):
        with tempfile.TemporaryDirectory(prefix="sghost-bench-deploy-") as directory:
            times, per_generation = run_gateway(Path(directory), count, rounds)
        print(f"{count:>2} resource(s), one changed: push -> successful (without verify_seconds) "
              f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms over {rounds}; "
              f"disk per generation {per_generation / 1024:.1f} KiB")
    with tempfile.TemporaryDirectory(prefix="sghost-bench-deploy-") as directory:
        try:
            print(f"a generation's site with one small plugin wheel: {wheel_bytes(Path(directory)) / 1024:.1f} KiB")
        except subprocess.CalledProcessError as error:
            print(f"(plugin wheel not measured: {error.stderr.decode(errors='replace').strip()[-200:]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
