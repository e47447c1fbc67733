"""Generate a throw-away CA, a broker certificate and a client certificate for TLS tests."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sgframework import constants


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_dir: Path
    """Holds ca_public_certificate.pem, public_certificate.pem and private_key.pem."""

    def broker_config(self) -> list[str]:
        return [
            f"cafile {self.ca_cert}",
            f"certfile {self.server_cert}",
            f"keyfile {self.server_key}",
            "require_certificate true",
            "tls_version tlsv1.2",
        ]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _issue(
    subject: str,
    ca_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    usage: x509.ObjectIdentifier,
    san: x509.SubjectAlternativeName | None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_tls_files(directory: Path, server_names: tuple[str, ...] = ("localhost", "127.0.0.1")) -> TlsFiles:
    """Write a CA, a server certificate for ``server_names`` and a client certificate."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("sgframework test CA")
    now = datetime.datetime.now(datetime.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    san = x509.SubjectAlternativeName([_general_name(name) for name in server_names])
    server_cert, server_key = _issue("localhost", ca_key, ca_name, ExtendedKeyUsageOID.SERVER_AUTH, san)
    client_cert, client_key = _issue("sgclient", ca_key, ca_name, ExtendedKeyUsageOID.CLIENT_AUTH, None)

    server_dir = directory / "server"
    client_dir = directory / "client"
    server_dir.mkdir(parents=True)
    client_dir.mkdir(parents=True)
    pem = serialization.Encoding.PEM
    (server_dir / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (server_dir / "server.pem").write_bytes(server_cert.public_bytes(pem))
    _write_key(server_key, server_dir / "server.key")
    (client_dir / constants.CA_CERTS).write_bytes(ca_cert.public_bytes(pem))
    (client_dir / constants.CERTFILE).write_bytes(client_cert.public_bytes(pem))
    _write_key(client_key, client_dir / constants.KEYFILE)
    return TlsFiles(server_dir / "ca.pem", server_dir / "server.pem", server_dir / "server.key", client_dir)
