"""A gateway for the deployment tests: sghost with an embedded broker, [deploy] on, and a recorder on it."""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hostharness import HostProcess, manifest_text
from sghost.deploy import document
from sghost.host.broker import MosquittoBroker, free_port
from sghost.testing import Recorder

VERIFY = 1.5
HOST = "gw1"
ECHOER = '[resources.keep]\ntype = "echoer"\n'
ADDED = '[resources.added]\ntype = "echoer"\n'
CRASHER = '[resources.added]\ntype = "crasher"\n'


class Gateway:
    """One gateway's manifest parts, its process, and a recorder on its embedded broker."""

    def __init__(self, tmp_path: Path, factory: Callable[..., HostProcess], clients: list[Any],
                 central: MosquittoBroker | None = None, name: str = HOST) -> None:
        self.tmp_path = tmp_path
        self.name = name
        self.directory = tmp_path if name == HOST else tmp_path / name
        """Where its manifest and state live: several gateways of one test each have their own."""
        self.directory.mkdir(exist_ok=True)
        self.trusted = "fleet.pub" if name == HOST else str(tmp_path / "fleet.pub")
        self.factory = factory
        self.clients = clients
        self.port = free_port()
        self.central = central
        self.host: HostProcess | None = None
        self.local: Recorder | None = None

    def manifest(self, resources: str, uplink: str | None = None, deploy_extra: str = "",
                 verify: float = VERIFY) -> str:
        text = manifest_text(None, resources, host=self.name, port=self.port, broker_extra="embedded = true\n")
        text += (f'\n[deploy]\nenabled = true\ntrusted_keys = ["{self.trusted}"]\nverify_seconds = {verify}\n'
                 f'state_dir = "{self.directory / "state"}"\n{deploy_extra}')
        if self.central is not None:
            address = uplink or f"127.0.0.1:{self.central.port}"
            text += (f'\n[uplink]\naddress = "{address}"\nstate_dir = "{self.directory / "uplink"}"\n'
                     "reconnect_min = 1\nreconnect_max = 2\n")
        return text

    def start(self, text: str | None = None) -> Gateway:
        if text is None:
            text = self.manifest_path.read_text()
        self.host = self.factory(text, name=self.manifest_path.name, directory=self.directory)
        self.host.wait_log("embedded broker (mosquitto)", timeout=15)
        self.local = Recorder("127.0.0.1", self.port, ["data/#", "command/#"]).start()
        self.clients.append(self.local)
        return self

    @property
    def manifest_path(self) -> Path:
        return self.directory / f"{self.name}.toml"

    def kill_and_start_again(self) -> None:
        """SIGKILL sghost and every process of its tree (as systemd ends a killed service's cgroup), then start it."""
        assert self.host is not None and self.local is not None
        family = self.host.descendants()
        self.host.signal(signal.SIGKILL)
        self.host.wait()
        for process in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self.local.stop()
        self.start()

    def states(self) -> list[dict[str, Any]]:
        assert self.local is not None
        return [json.loads(m.payload) for m in self.local.on(f"data/{self.name}/deployment") if m.payload]

    def wait_state(self, deployment_id: str, state: str, timeout: float = 20.0) -> dict[str, Any]:
        assert self.local is not None
        found = self.local.wait_until(
            lambda: next((s for s in self.states() if s["id"] == deployment_id and s["state"] == state), None),
            timeout,
        )
        assert found, f"no {state} for {deployment_id}; seen: {self.states()}\n{self.host.log() if self.host else ''}"
        return found  # type: ignore[return-value]

    def push(self, payload: bytes) -> None:
        assert self.local is not None
        self.local.publish(f"command/{self.name}/deploy", payload, qos=1, retain=True)


def sign(key: Ed25519PrivateKey, manifest: str, sequence: int, host: str = HOST,
         requirements: list[str] | None = None) -> tuple[bytes, str]:
    signed = document.sign({"host": host, "sequence": sequence, "manifest": manifest,
                            "requirements": requirements or []}, key)
    return signed.to_json().encode(), signed.id


def fleet_key(directory: Path) -> Ed25519PrivateKey:
    """A new fleet key; its public half is written to ``directory/fleet.pub``."""
    private = Ed25519PrivateKey.generate()
    (directory / "fleet.pub").write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private
