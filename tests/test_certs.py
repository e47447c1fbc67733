"""``sghost certs init|issue``: layout, key modes, names, SANs, refusals, and that it works as a TLS identity."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sgframework import constants
from sghost.cli import certs

CLI = [sys.executable, "-c", "import sys; from sghost.cli.certs import main; sys.exit(main(sys.argv[1:]))"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=30)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def common_name(name: x509.Name) -> str:
    return str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "certs"
    result = run("init", "--dir", str(directory))
    assert result.returncode == 0, result.stderr
    return directory


def test_init_writes_a_ca_with_a_0600_key(ca_dir: Path) -> None:
    key, cert = ca_dir / "ca" / certs.CA_KEY, ca_dir / "ca" / certs.CA_CERTIFICATE
    assert mode(key) == 0o600
    assert mode(ca_dir / "ca") == 0o700
    ca = load(cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.subject == ca.issuer and common_name(ca.subject) == "sghost CA"
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.signature_hash_algorithm is not None and ca.signature_hash_algorithm.name == "sha256"


def test_issue_writes_the_layout_sgframework_expects(ca_dir: Path) -> None:
    result = run("issue", "taxisign", "--dir", str(ca_dir), "--days", "30")
    assert result.returncode == 0, result.stderr
    target = ca_dir / "taxisign"
    assert sorted(path.name for path in target.iterdir()) == sorted(
        [constants.CA_CERTS, constants.CERTFILE, constants.KEYFILE]
    )
    assert mode(target / constants.KEYFILE) == 0o600
    assert not mode(target / constants.CERTFILE) & 0o022
    assert f'certificate_directory = "{target}"' in result.stdout
    cert = load(target / constants.CERTFILE)
    ca = load(target / constants.CA_CERTS)
    assert common_name(cert.subject) == "taxisign"
    assert cert.issuer == ca.subject
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    days = (cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)).days
    assert 29 <= days <= 30
    cert.verify_directly_issued_by(ca)
    # And Python's TLS stack accepts the files as sgframework loads them.
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(target / constants.CA_CERTS))
    context.load_cert_chain(str(target / constants.CERTFILE), str(target / constants.KEYFILE))


def test_server_certificate_has_loopback_and_extra_alternative_names(ca_dir: Path) -> None:
    result = run("issue", "broker", "--server", "--san", "gw.example.net", "--san", "10.0.0.7", "--dir", str(ca_dir))
    assert result.returncode == 0, result.stderr
    cert = load(ca_dir / "broker" / constants.CERTFILE)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "gw.example.net"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address(address) for address in ("127.0.0.1", "::1", "10.0.0.7")
    }
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert mode(ca_dir / "broker" / constants.KEYFILE) == 0o600


def test_existing_keys_are_not_overwritten_without_force(ca_dir: Path) -> None:
    assert run("issue", "alpha", "--dir", str(ca_dir)).returncode == 0
    key = ca_dir / "alpha" / constants.KEYFILE
    before = key.read_bytes()
    refused = run("issue", "alpha", "--dir", str(ca_dir))
    assert refused.returncode == 1
    assert "refusing" in refused.stderr and "--force" in refused.stderr and str(key) in refused.stderr
    assert key.read_bytes() == before
    ca_key = ca_dir / "ca" / certs.CA_KEY
    ca_before = ca_key.read_bytes()
    again = run("init", "--dir", str(ca_dir))
    assert again.returncode == 1 and "--force" in again.stderr
    assert ca_key.read_bytes() == ca_before

    forced = run("issue", "alpha", "--dir", str(ca_dir), "--force")
    assert forced.returncode == 0, forced.stderr
    assert key.read_bytes() != before and mode(key) == 0o600


def test_issue_without_a_ca_says_to_run_init(tmp_path: Path) -> None:
    result = run("issue", "alpha", "--dir", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert "sghost certs init" in result.stderr and "no CA" in result.stderr
    assert not (tmp_path / "nowhere" / "alpha").exists()


@pytest.mark.parametrize("name", ["a/b", "x+y", "ca", "..", ".hidden", ""])
def test_names_that_cannot_be_a_resource_or_a_directory_are_refused(ca_dir: Path, name: str) -> None:
    result = run("issue", name, "--dir", str(ca_dir))
    assert result.returncode == 1 and result.stderr.startswith("sghost certs: "), result.stderr


def test_bad_days_and_san_without_server_are_refused(ca_dir: Path) -> None:
    assert "at least 1" in run("issue", "alpha", "--days", "0", "--dir", str(ca_dir)).stderr
    assert "--server" in run("issue", "alpha", "--san", "x.example", "--dir", str(ca_dir)).stderr


def test_a_certificate_never_outlives_its_ca(tmp_path: Path) -> None:
    ca = certs.init_ca(tmp_path, days=10)
    issued = certs.issue_certificate(tmp_path, "alpha", days=365)
    assert issued.not_after <= ca.not_after


def test_add_certs_parser_plugs_into_a_subcommand_parser(ca_dir: Path) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="sghost")
    certs.add_certs_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["certs", "issue", "beta", "--dir", str(ca_dir), "--days", "2"])
    assert args.handler(args) == 0
    assert (ca_dir / "beta" / constants.KEYFILE).is_file()
    with pytest.raises(SystemExit):
        parser.parse_args(["certs"])  # an action is required
