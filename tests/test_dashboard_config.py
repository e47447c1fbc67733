"""The ``[dashboard]`` table: off and on loopback by default; beyond loopback only with a token file."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostharness import run_cli
from sghost.config.dashboard import DashboardConfig
from sghost.config.manifest import ManifestError, load_manifest


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hostconfig.toml"
    path.write_text(text)
    return path


def token_file(tmp_path: Path, mode: int = 0o600, text: str = "a-long-enough-token-of-32-chars!\n") -> Path:
    path = tmp_path / "dashboard.token"
    path.write_text(text)
    path.chmod(mode)
    return path


def problems(tmp_path: Path, table: str) -> str:
    with pytest.raises(ManifestError) as caught:
        load_manifest(write(tmp_path, f"[dashboard]\n{table}"))
    return str(caught.value)


def test_without_the_table_the_dashboard_is_off_on_loopback_and_read_only(tmp_path: Path) -> None:
    config = load_manifest(write(tmp_path, "[host]\nname = 'gw'\n")).dashboard
    assert config == DashboardConfig()
    assert (config.enabled, config.listen, config.control) == (False, ("127.0.0.1", 8080), False)
    assert config.token_file is None
    assert config.loopback


def test_every_key_is_read(tmp_path: Path) -> None:
    token = token_file(tmp_path)
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in ("public_certificate.pem", "private_key.pem"):
        (certs / name).write_text("x")
    config = load_manifest(write(tmp_path, (
        '[dashboard]\nenabled = true\nlisten = "[::]:8443"\ntoken_file = "dashboard.token"\n'
        'certificate_directory = "certs"\ncontrol = true\nhosts = ["Gateway.local", "192.168.1.20"]\n'
    ))).dashboard
    assert config == DashboardConfig(
        enabled=True, listen=("::", 8443), token_file=token, certificate_directory=certs, control=True,
        hosts=("gateway.local", "192.168.1.20"),
    )
    assert not config.loopback
    assert config.read_token() == "a-long-enough-token-of-32-chars!"


def test_a_non_loopback_listen_without_token_file_is_refused_naming_token_file(tmp_path: Path) -> None:
    text = problems(tmp_path, 'enabled = true\nlisten = "0.0.0.0:9443"\n')
    assert "dashboard.token_file: unset while listen = \"0.0.0.0:9443\" is not a loopback address" in text


def test_sghost_check_refuses_it_too(tmp_path: Path) -> None:
    path = write(tmp_path, '[dashboard]\nenabled = true\nlisten = "192.168.1.20:9443"\n')
    result = run_cli("check", "-c", str(path))
    assert result.returncode != 0
    assert "dashboard.token_file" in result.stderr


def test_a_token_file_others_can_read_is_refused_like_a_password_file(tmp_path: Path) -> None:
    token_file(tmp_path, mode=0o644)
    text = problems(tmp_path, 'token_file = "dashboard.token"\n')
    assert "dashboard.token_file:" in text and "expected mode 0600: run chmod 600" in text


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('token_file = "missing.token"\n', "dashboard.token_file: file not found"),
        ('listen = "127.0.0.1"\n', "dashboard.listen: \"127.0.0.1\" is not an address with a port"),
        ('listen = 9443\n', "dashboard.listen: got 9443 (an integer); expected a string \"address:port\""),
        ('enabled = "yes"\n', "dashboard.enabled: got \"yes\" (a string); expected true or false"),
        ('hosts = ["http://gw.local/"]\n', "dashboard.hosts: \"http://gw.local/\" is not a host name"),
        ('controll = true\n', 'dashboard.controll: unknown key; did you mean "control"?'),
        ('certificate_directory = "nowhere"\n', "dashboard.certificate_directory: directory not found"),
    ],
)
def test_each_wrong_value_is_named(tmp_path: Path, table: str, expected: str) -> None:
    assert expected in problems(tmp_path, table)


def test_an_empty_token_file_is_refused(tmp_path: Path) -> None:
    token_file(tmp_path, text="\n")
    assert "is empty; expected the token on its first line" in problems(tmp_path, 'token_file = "dashboard.token"\n')


def test_control_without_a_token_is_a_warning(tmp_path: Path) -> None:
    config = load_manifest(write(tmp_path, "[dashboard]\nenabled = true\ncontrol = true\n"))
    assert any("dashboard.control: true without token_file" in line for line in config.warnings)
