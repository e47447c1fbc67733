"""Deployments that install plugin packages: wheels of a tiny plugin in two versions, built here with pip wheel."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers.deploygateway import ECHOER, HOST, VERIFY, Gateway, fleet_key, sign

from hostharness import HostProcess, resource_pid

pytest.importorskip("wheel", reason="pip wheel needs the wheel package without build isolation (the test extra)")

PLUGIN = '''\
import sghost

VERSION = "{version}"


def setup(context):
    context.resource.register_outgoing_data("version", defaultvalue=VERSION, send_data_as_retained=True)


@sghost.hookimpl
def register_resource_types(register):
    register("demo", setup, description="publishes its plugin version")
'''
PYPROJECT = '''\
[build-system]
requires = ["setuptools>=61", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "sghost-demo"
version = "{version}"

[project.entry-points.sghost]
demo = "sghost_demo"

[tool.setuptools]
packages = ["sghost_demo"]
'''
DEMO = '[resources.dev]\ntype = "demo"\n'


def build_wheel(tmp_path: Path, version: str, wheelhouse: Path) -> str:
    """Build sghost-demo ``version`` into ``wheelhouse``; return its pinned, hashed requirement line."""
    project = tmp_path / f"demo-{version}"
    (project / "sghost_demo").mkdir(parents=True)
    (project / "pyproject.toml").write_text(PYPROJECT.format(version=version))
    (project / "sghost_demo" / "__init__.py").write_text(PLUGIN.format(version=version))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--isolated", "--no-build-isolation", "--no-deps", "--no-index",
         "-w", str(wheelhouse), str(project)],
        check=True, capture_output=True,
    )
    wheel = next(wheelhouse.glob(f"sghost_demo-{version}-*.whl"))
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return f"sghost-demo=={version} --hash=sha256:{digest}"


@pytest.fixture
def wheels(tmp_path: Path) -> dict[str, str]:
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    return {version: build_wheel(tmp_path, version, wheelhouse) for version in ("0.1", "0.2")}


@pytest.fixture
def key(tmp_path: Path) -> Ed25519PrivateKey:
    return fleet_key(tmp_path)


@pytest.fixture
def gateway(tmp_path: Path, key: Ed25519PrivateKey, host_factory: Callable[..., HostProcess],
            clients: list[Any]) -> Gateway:
    return Gateway(tmp_path, host_factory, clients)


def deploy(gateway: Gateway, key: Any, resources: str, requirements: list[str], sequence: int,
           state: str = "successful") -> dict[str, Any]:
    manifest = gateway.manifest(resources, deploy_extra='find_links = "wheelhouse"\n')
    payload, deployment_id = sign(key, manifest, sequence, requirements=requirements)
    gateway.push(payload)
    return gateway.wait_state(deployment_id, state, timeout=VERIFY + 60)


def test_upgrade_runs_the_new_code_and_a_failed_one_brings_the_old_version_back(
    gateway: Gateway, key: Any, wheels: dict[str, str]
) -> None:
    gateway.start(gateway.manifest(ECHOER, deploy_extra='find_links = "wheelhouse"\n'))
    assert gateway.local is not None
    keep_pid = resource_pid(gateway.local, HOST, "keep")
    version_topic = "data/dev/version"

    deploy(gateway, key, ECHOER + DEMO, [wheels["0.1"]], 10)
    gateway.local.wait_for(version_topic, "0.1", timeout=10)
    dev_pid = resource_pid(gateway.local, HOST, "dev")

    upgraded = deploy(gateway, key, ECHOER + DEMO + '[resources.added]\ntype = "echoer"\n', [wheels["0.2"]], 11)
    assert upgraded["generation"] == 3
    gateway.local.wait_for(version_topic, "0.2", timeout=10)
    assert resource_pid(gateway.local, HOST, "dev", other_than=dev_pid) != dev_pid  # its plugin changed
    assert resource_pid(gateway.local, HOST, "keep") == keep_pid
    assert resource_pid(gateway.local, HOST, "added") > 0
    new_dev_pid = resource_pid(gateway.local, HOST, "dev")

    failed = deploy(gateway, key, ECHOER + DEMO + '[resources.bad]\ntype = "crasher"\n', [wheels["0.1"]], 12,
                    state="rolled-back")
    assert "resource bad" in failed["reason"] and failed["generation"] == 3, failed
    gateway.local.wait_until(lambda: gateway.local.latest(version_topic) == "0.2"  # type: ignore[union-attr]
                             and resource_pid(gateway.local, HOST, "dev") != new_dev_pid, 15)
    assert gateway.local.latest(version_topic) == "0.2"  # the previous plugin version is back
    assert resource_pid(gateway.local, HOST, "keep") == keep_pid


def test_a_package_whose_hash_does_not_match_or_a_type_it_lacks_is_rejected(
    gateway: Gateway, key: Any, wheels: dict[str, str]
) -> None:
    gateway.start(gateway.manifest(ECHOER, deploy_extra='find_links = "wheelhouse"\n'))
    assert gateway.local is not None
    keep_pid = resource_pid(gateway.local, HOST, "keep")
    wrong = wheels["0.1"].split("--hash=")[0] + "--hash=sha256:" + "0" * 64
    rejected = deploy(gateway, key, ECHOER + DEMO, [wrong], 10, state="rejected")
    assert "hash does not match" in rejected["reason"], rejected
    gateway.local.wait_for(f"data/{HOST}/deploy_rejected", "1", timeout=5)
    assert resource_pid(gateway.local, HOST, "keep") == keep_pid
    assert [g.name for g in (gateway.tmp_path / "state" / "generations").iterdir() if g.name.isdigit()] == ["1"]

    # A type the new packages do not provide is known only once they are installed: rejected after installing.
    misspelled = deploy(gateway, key, ECHOER + DEMO.replace('"demo"', '"demox"'), [wheels["0.1"]], 11,
                        state="rejected")
    assert "resources.dev.type" in misspelled["reason"] and "demo" in misspelled["reason"], misspelled
    assert [s["state"] for s in gateway.states() if s["id"] == misspelled["id"]] == [
        "received", "installing", "rejected"]
    gateway.local.wait_for(f"data/{HOST}/deploy_rejected", "2", timeout=5)
    assert resource_pid(gateway.local, HOST, "keep") == keep_pid
