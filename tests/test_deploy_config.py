"""The manifest's [deploy] table: defaults, each key's errors, and what sghost check says."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

from hostharness import run_cli
from sghost.config.manifest import ManifestError, load_manifest
from sghost.config.uplink import default_state_dir


def write_public_key(path: Path, key: object | None = None) -> Path:
    key = key or Ed25519PrivateKey.generate()
    path.write_bytes(key.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def manifest(tmp_path: Path, deploy: str) -> Path:
    path = tmp_path / "hostconfig.toml"
    path.write_text(f'[host]\nname = "gw1"\n[deploy]\n{deploy}\n')
    return path


def problems(path: Path) -> str:
    with pytest.raises(ManifestError) as raised:
        load_manifest(path)
    return str(raised.value)


def test_absent_table_is_off_and_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "hostconfig.toml"
    path.write_text('[host]\nname = "gw1"\n')
    assert load_manifest(path).deploy is None
    deploy = load_manifest(manifest(tmp_path, "")).deploy
    deploy = load_manifest(manifest(tmp_path, "enabled = false")).deploy
    assert not deploy.enabled
    assert deploy.keep_generations == 3 and deploy.verify_seconds == 30.0
    assert deploy.state_dir == default_state_dir("gw1")


def test_enabled_with_relative_key_and_find_links(tmp_path: Path) -> None:
    write_public_key(tmp_path / "fleet.pub")
    (tmp_path / "wheels").mkdir()
    path = manifest(tmp_path, 'enabled = true\ntrusted_keys = ["fleet.pub"]\nfind_links = "wheels"\n'
                    'state_dir = "state"\nverify_seconds = 2\nkeep_generations = 4\n')
    deploy = load_manifest(path).deploy
    assert deploy.enabled and deploy.trusted_keys == (tmp_path / "fleet.pub",)
    assert deploy.find_links == (str(tmp_path / "wheels"),) and deploy.state_dir == tmp_path / "state"
    assert deploy.verify_seconds == 2.0 and deploy.keep_generations == 4


def test_each_bad_key_is_named(tmp_path: Path) -> None:
    text = problems(manifest(tmp_path, 'enabled = "yes"\nkeep_generations = 1\nverify_seconds = 0\n'
                             'index_url = "ftp://x"\nstate_dri = "x"\n'))
    assert "deploy.enabled: got \"yes\" (a string); expected true or false" in text
    assert "deploy.keep_generations: 1 is out of range" in text
    assert "deploy.verify_seconds: 0 is out of range" in text
    assert "deploy.index_url:" in text and "URL" in text
    assert "deploy.state_dri: unknown key" in text and "state_dir" in text


def test_enabled_needs_readable_ed25519_keys(tmp_path: Path) -> None:
    assert "deploy.trusted_keys: no trusted key" in problems(manifest(tmp_path, "enabled = true\n"))
    rsa = generate_private_key(public_exponent=65537, key_size=2048)
    write_public_key(tmp_path / "rsa.pub", rsa)
    text = problems(manifest(tmp_path, 'enabled = true\ntrusted_keys = ["missing.pub", "rsa.pub"]\n'))
    assert f"deploy.trusted_keys[0]: {tmp_path / 'missing.pub'}: cannot read the trusted key" in text
    assert f"deploy.trusted_keys[1]: {tmp_path / 'rsa.pub'}: expected an Ed25519 public key" in text


def test_sghost_check_reports_the_deploy_table(tmp_path: Path) -> None:
    path = manifest(tmp_path, 'enabled = true\ntrusted_keys = ["nothere.pub"]\n')
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 2
    assert "deploy.trusted_keys[0]" in result.stderr and "nothere.pub" in result.stderr
