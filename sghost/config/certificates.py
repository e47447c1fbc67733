"""What is wrong with a certificate directory, found before connecting: each problem says which.

:func:`inspect_directory` reads ``public_certificate.pem``, ``private_key.pem`` and
``ca_public_certificate.pem`` of a ``certificate_directory`` and returns
:class:`CertificateProblem` lines such as::

    certificate certs/gamma/public_certificate.pem expired on 2026-11-22 10:20 UTC
    certificate certs/gamma/public_certificate.pem is not yet valid until 2027-01-01 00:00 UTC (...)
    certificate certs/epsilon/public_certificate.pem is not signed by the CA in certs/epsilon (...)
    key certs/zeta/private_key.pem does not match the certificate certs/zeta/public_certificate.pem

``sghost check`` reports them (errors, except "not yet valid": a warning, since a board
without a real-time clock boots with a clock in the past) and a resource process checks
its own directory before it connects, so that the operator of a gateway learns the reason
without reading the broker's log.

Only the ``ssl`` module is used, which every resource process has loaded anyway (paho
needs it), so the check costs no memory and works without ``cryptography``:

- the key against the certificate: ``SSLContext.load_cert_chain`` refuses a mismatch;
- the CA: a TLS handshake between two in-memory ends, where the server end trusts only
  the CA file and requires the certificate as a client's. OpenSSL decides by the
  signature (two CAs may share a common name), and a CA file holding several CAs, as
  during a rotation, is fine when one of them signed it;
- the dates: CPython's certificate decoder (``ssl._ssl._test_decode_cert``); where it is
  missing, the handshake's verdict still says "expired" or "not yet valid", without the date.

Not imported at module level: the supervisor, which loads this layer, never loads ssl.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sgframework import constants

EXPIRED = "expired"
NOT_YET_VALID = "not_yet_valid"
FOREIGN_CA = "foreign_ca"
KEY_MISMATCH = "key_mismatch"
UNREADABLE = "unreadable"
REJECTED = "rejected"

_X509_NOT_YET_VALID = 9
_X509_EXPIRED = 10
_X509_NOT_SIGNED = {2, 7, 20, 21, 30, 31, 32}
"""OpenSSL verify codes meaning the CA file holds no certificate that signed this one."""
_HANDSHAKE_ROUNDS = 8


@dataclass(frozen=True)
class CertificateProblem:
    """One problem of a certificate directory; a ``warning`` does not stop a resource from trying."""

    kind: str
    text: str

    @property
    def warning(self) -> bool:
        return self.kind == NOT_YET_VALID


def inspect_directory(directory: str | Path, now: datetime.datetime | None = None) -> list[CertificateProblem]:
    """The problems of the certificate, key and CA file in ``directory`` (a missing file is not reported here)."""
    base = Path(directory)
    ca_path, cert_path, key_path = (base / name for name in (constants.CA_CERTS, constants.CERTFILE, constants.KEYFILE))
    if not all(os.access(path, os.R_OK) and path.is_file() for path in (ca_path, cert_path, key_path)):
        return []  # a missing or unreadable file is reported by the manifest's check
    import ssl  # here, not at module level (see the module's docstring)

    moment = now or datetime.datetime.now(datetime.UTC)
    problems = _date_problems(cert_path, moment)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(str(cert_path), str(key_path))
    except ssl.SSLError as error:
        if "KEY_VALUES_MISMATCH" in str(error) or "key values mismatch" in str(error):
            text = f"key {key_path} does not match the certificate {cert_path}"
            return [*problems, CertificateProblem(KEY_MISMATCH, text)]
        return [*problems, CertificateProblem(UNREADABLE, f"cannot load {cert_path} with {key_path}: {error}")]
    except OSError as error:
        return [*problems, CertificateProblem(UNREADABLE, f"cannot read {error.filename or base}: {error.strerror}")]
    if problems and problems[0].kind in (EXPIRED, NOT_YET_VALID):
        return problems  # the handshake would only repeat it, and could not check the signature
    verdict = _verify_as_client(ca_path, cert_path, key_path)
    if verdict is not None:
        problems.append(_describe_verdict(base, cert_path, *verdict))
    return problems


def _date(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _date_problems(cert_path: Path, now: datetime.datetime) -> list[CertificateProblem]:
    dates = _validity(cert_path)
    if dates is None:
        return []
    not_before, not_after = dates
    if now > not_after:
        return [CertificateProblem(EXPIRED, f"certificate {cert_path} expired on {_date(not_after)}")]
    if now < not_before:
        text = f"certificate {cert_path} is not yet valid until {_date(not_before)} (this clock says {_date(now)})"
        return [CertificateProblem(NOT_YET_VALID, text)]
    return []


def _validity(cert_path: Path) -> tuple[datetime.datetime, datetime.datetime] | None:
    """notBefore and notAfter from CPython's certificate decoder; None where it is not available."""
    import ssl

    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:
        return None
    try:
        decoded = decode(str(cert_path))
        before, after = (ssl.cert_time_to_seconds(decoded[key]) for key in ("notBefore", "notAfter"))
    except (ssl.SSLError, OSError, KeyError, ValueError):
        return None
    return datetime.datetime.fromtimestamp(before, datetime.UTC), datetime.datetime.fromtimestamp(after, datetime.UTC)


def _describe_verdict(base: Path, cert_path: Path, code: int | None, message: str) -> CertificateProblem:
    if code == _X509_EXPIRED:
        return CertificateProblem(EXPIRED, f"certificate {cert_path} or its CA in {base} has expired ({message})")
    if code == _X509_NOT_YET_VALID:
        return CertificateProblem(NOT_YET_VALID, f"certificate {cert_path} or its CA in {base} is not yet valid")
    if code in _X509_NOT_SIGNED:
        return CertificateProblem(FOREIGN_CA, f"certificate {cert_path} is not signed by the CA in {base} ({message})")
    return CertificateProblem(REJECTED, f"certificate {cert_path} is not accepted by the CA in {base}: {message}")


def _verify_as_client(ca_path: Path, cert_path: Path, key_path: Path) -> tuple[int | None, str] | None:
    """Verify the certificate as a TLS server trusting only ``ca_path`` would; None when it is accepted.

    Both ends live in memory and present the same certificate; only the server end
    verifies (the client end has nothing to check a server against).
    """
    import ssl

    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(cert_path), str(key_path))
    server.verify_mode = ssl.CERT_REQUIRED
    try:
        server.load_verify_locations(str(ca_path))
    except (ssl.SSLError, OSError) as error:
        return None, f"cannot read {ca_path}: {error}"
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    client.load_cert_chain(str(cert_path), str(key_path))
    return _handshake(server, client)


def _handshake(server_context: Any, client_context: Any) -> tuple[int | None, str] | None:
    import ssl

    to_server, to_client, from_server, from_client = (ssl.MemoryBIO() for _ in range(4))
    server = server_context.wrap_bio(to_server, from_server, server_side=True)
    client = client_context.wrap_bio(to_client, from_client)
    finished = set()
    for _ in range(_HANDSHAKE_ROUNDS):
        for end in (client, server):
            if end in finished:
                continue
            try:
                end.do_handshake()
                finished.add(end)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLCertVerificationError as error:
                return error.verify_code, error.verify_message
            except ssl.SSLError as error:
                return None, str(error)
        if server in finished:
            return None
        to_server.write(from_client.read())
        to_client.write(from_server.read())
    return None, "the test handshake did not complete"


def review_manifest(config: Any) -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` about the certificates of a loaded ``HostConfig``, as ``sghost check`` prints them.

    Each line reads ``<manifest>: <key>: <problem>``: ``broker.certificate_directory`` for
    the host's identity, ``resources.<name>.certificate_directory`` for each enabled resource's own.
    """
    directories: list[tuple[str, Path]] = []
    if config.broker.certificate_directory is not None:
        directories.append(("broker.certificate_directory", config.broker.certificate_directory))
    for name, resource in config.resources.items():
        if resource.enabled and resource.certificate_directory is not None:
            shown = name if name.replace("_", "").replace("-", "").isalnum() else f'"{name}"'
            directories.append((f"resources.{shown}.certificate_directory", resource.certificate_directory))
    errors: list[str] = []
    warnings: list[str] = []
    for keypath, directory in directories:
        for problem in inspect_directory(directory):
            (warnings if problem.warning else errors).append(f"{config.path}: {keypath}: {problem.text}")
    return errors, warnings
