"""A throw-away CA, a broker certificate and a client certificate for TLS tests, issued by ``sghost certs``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from sghost.cli.certs import SERVER_SANS, init_ca, issue_certificate

CLIENT = "sgclient"
BROKER = "broker"


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


def make_tls_files(directory: Path, server_names: tuple[str, ...] = SERVER_SANS) -> TlsFiles:
    """Write a CA, a broker certificate naming exactly ``server_names`` and a client certificate into ``directory``."""
    ca = init_ca(directory, days=1, common_name="sgframework test CA")
    server = issue_certificate(directory, BROKER, days=1, server=True)
    client = issue_certificate(directory, CLIENT, days=1)
    if set(server_names) != set(SERVER_SANS):
        _rename_server(server.certificate, ca.key, server_names)
    return TlsFiles(ca.certificate, server.certificate, server.key, client.directory)


def _rename_server(certificate_path: Path, ca_key_path: Path, server_names: tuple[str, ...]) -> None:
    """Re-sign the broker's certificate with only ``server_names`` as its names.

    ``sghost certs`` always names the loopback addresses in a broker certificate; a test of a
    misnamed broker needs one that does not.
    """
    certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    names = x509.SubjectAlternativeName([_general_name(name) for name in server_names])
    builder = (
        x509.CertificateBuilder()
        .subject_name(certificate.subject)
        .issuer_name(certificate.issuer)
        .public_key(certificate.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(certificate.not_valid_before_utc)
        .not_valid_after(certificate.not_valid_after_utc)
    )
    for extension in certificate.extensions:
        if not isinstance(extension.value, x509.SubjectAlternativeName):
            builder = builder.add_extension(extension.value, extension.critical)
    renamed = builder.add_extension(names, critical=False).sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    certificate_path.write_bytes(renamed.public_bytes(serialization.Encoding.PEM))


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)
