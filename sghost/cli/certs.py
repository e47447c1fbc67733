"""``sghost certs``: a small certificate authority for a gateway's broker and resources.

``sghost certs init`` creates a CA in ``<dir>/ca/``; ``sghost certs issue NAME``
issues a certificate with CN = NAME in ``<dir>/NAME/``, in the layout sgframework
expects, so that ``certificate_directory = "<dir>/NAME"`` works::

    <dir>/ca/ca_public_certificate.pem       the CA certificate (give it to the broker: cafile)
    <dir>/ca/ca_private_key.pem              the CA key (0600; keep it off the gateway if you can)
    <dir>/NAME/ca_public_certificate.pem     a copy of the CA certificate
    <dir>/NAME/public_certificate.pem        NAME's certificate, signed by the CA
    <dir>/NAME/private_key.pem               NAME's key (0600)

Keys are EC P-256, signatures SHA-256. With ``--server`` the certificate is a
broker's (server authentication, SAN localhost, 127.0.0.1, ::1 and every ``--san``);
otherwise a client's (client authentication), whose CN the broker takes as the user
name with ``use_identity_as_username true``. Existing keys are never overwritten
without ``--force``. Meant for tests and first deployments; see docs/security.md.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

from sgframework import constants
from sgframework.topics import validate_name

DEFAULT_DIRECTORY = "certs"
CA_DIRECTORY = "ca"
CA_CERTIFICATE = "ca_public_certificate.pem"
CA_KEY = "ca_private_key.pem"
CA_DAYS = 3650
LEAF_DAYS = 365
SERVER_SANS = ("localhost", "127.0.0.1", "::1")
BACKDATE = datetime.timedelta(minutes=5)
"""Certificates are valid from a little before now, for clocks that differ slightly."""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_MISSING_EXTRA = 2
MISSING_CRYPTOGRAPHY = (
    "sghost certs needs the 'cryptography' package: pip install 'sghost[certs]' "
    "(Debian: apt-get install python3-cryptography)"
)


class CertificateError(Exception):
    """A certificate could not be created; the text says why and what to do."""


@dataclass(frozen=True)
class Issued:
    """The files of one issued certificate."""

    directory: Path
    certificate: Path
    key: Path
    ca_certificate: Path
    not_after: datetime.datetime


# ---------------------------------------------------------------------------
# The Python API (the tests use it to make expired certificates with ``now``)


def init_ca(
    directory: str | os.PathLike[str],
    days: int = CA_DAYS,
    common_name: str = "sghost CA",
    force: bool = False,
    now: datetime.datetime | None = None,
) -> Issued:
    """Create the CA in ``<directory>/ca/``; refuse to replace an existing CA key without ``force``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    _check_days(days)
    ca_dir = Path(directory) / CA_DIRECTORY
    key_path, cert_path = ca_dir / CA_KEY, ca_dir / CA_CERTIFICATE
    _refuse_overwrite([key_path, cert_path], force, "a CA (every certificate it signed would have to be reissued)")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = (now or _utcnow()) - BACKDATE
    not_after = start + BACKDATE + datetime.timedelta(days=days)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _make_directory(ca_dir)
    _write_private(key_path, _key_pem(key))
    _write_public(cert_path, certificate.public_bytes(serialization.Encoding.PEM))
    return Issued(ca_dir, cert_path, key_path, cert_path, not_after)


def issue_certificate(
    directory: str | os.PathLike[str],
    name: str,
    days: int = LEAF_DAYS,
    server: bool = False,
    sans: Iterable[str] = (),
    force: bool = False,
    now: datetime.datetime | None = None,
    owner: str | None = None,
) -> Issued:
    """Issue a certificate with CN = ``name`` into ``<directory>/<name>/``, signed by the CA there.

    With ``owner`` (a Unix user), the directory and its files belong to that user and its
    primary group, the key mode 0600: only that user (and root) can read it. That is how a
    resource that runs as its own ``user`` gets a key no other resource can read.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    _check_days(days)
    _check_name(name)
    account = _owner_account(owner)
    sans = list(sans)
    if sans and not server:
        raise CertificateError("--san is for a broker's certificate; add --server")
    base = Path(directory)
    ca_key, ca_cert = _load_ca(base)
    target = base / name
    key_path, cert_path, ca_copy = (target / f for f in (constants.KEYFILE, constants.CERTFILE, constants.CA_CERTS))
    _refuse_overwrite([key_path, cert_path], force, f"the identity {name!r}")
    alternative = _alternative_names([*SERVER_SANS, *sans]) if server else None
    key = ec.generate_private_key(ec.SECP256R1())
    start = (now or _utcnow()) - BACKDATE
    not_after = min(start + BACKDATE + datetime.timedelta(days=days), ca_cert.not_valid_after_utc)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    ca_key_id = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id), critical=False)
    )
    if alternative is not None:
        builder = builder.add_extension(alternative, critical=False)
    certificate = builder.sign(ca_key, hashes.SHA256())
    pem = serialization.Encoding.PEM
    _make_directory(target)
    _write_private(key_path, _key_pem(key))
    _write_public(cert_path, certificate.public_bytes(pem))
    _write_public(ca_copy, ca_cert.public_bytes(pem))
    if account is not None:
        for path in (target, key_path, cert_path, ca_copy):
            os.chown(path, *account)
    return Issued(target, cert_path, key_path, ca_copy, not_after)


# ---------------------------------------------------------------------------
# The command line


def add_certs_parser(subparsers: Any) -> None:
    """Add ``certs init`` and ``certs issue NAME`` to the ``sghost`` command line."""
    certs = subparsers.add_parser(
        "certs",
        help="create a CA and TLS certificates for the broker and each resource (tests, first deployments)",
        description="A small certificate authority: 'init' creates it in DIR/ca/, 'issue NAME' writes "
        "DIR/NAME/ with ca_public_certificate.pem, public_certificate.pem and private_key.pem (0600), "
        'so that certificate_directory = "DIR/NAME" works. See docs/security.md.',
    )
    _fill_certs_parser(certs)


def _fill_certs_parser(certs: argparse.ArgumentParser) -> None:
    commands = certs.add_subparsers(dest="certs_command", metavar="ACTION", required=True)
    init = commands.add_parser("init", help="create the CA in DIR/ca/")
    _add_common(init, CA_DAYS)
    init.add_argument("--cn", default="sghost CA", help="the CA's common name (default: %(default)s)")
    issue = commands.add_parser("issue", help="issue a certificate with CN = NAME into DIR/NAME/")
    issue.add_argument("name", metavar="NAME", help="a resource name, the [host] name, or the broker's name")
    _add_common(issue, LEAF_DAYS)
    issue.add_argument(
        "--server", action="store_true",
        help="a broker (server) certificate, valid for localhost, 127.0.0.1 and ::1 (and every --san)",
    )
    issue.add_argument(
        "--owner", metavar="USER",
        help="make DIR/NAME/ and its key belong to this Unix user (the resource's manifest user), "
        "so that only it can read the key (needs root)",
    )
    issue.add_argument(
        "--san", action="append", default=[], metavar="HOST",
        help="with --server: another DNS name or IP address the broker is reached by (repeatable)",
    )
    certs.set_defaults(handler=run_certs)


def _add_common(parser: argparse.ArgumentParser, days: int) -> None:
    parser.add_argument(
        "--dir", default=DEFAULT_DIRECTORY, metavar="DIR",
        help=f"the certificate directory (default: ./{DEFAULT_DIRECTORY})",
    )
    parser.add_argument("--days", type=int, default=days, help="days of validity (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="replace an existing key and certificate")


def run_certs(args: argparse.Namespace) -> int:
    """The ``sghost certs`` handler: return the exit code."""
    try:
        import cryptography.x509  # noqa: F401
    except ImportError:
        print(MISSING_CRYPTOGRAPHY, file=sys.stderr)
        return EXIT_MISSING_EXTRA
    try:
        if args.certs_command == "init":
            issued = init_ca(args.dir, days=args.days, common_name=args.cn, force=args.force)
            print(f"CA written to {issued.directory}/ (key {issued.key}, mode 0600), valid until {_date(issued)}")
            print(f"next: sghost certs issue <name> --dir {args.dir}; the broker's cafile is {issued.certificate}")
            return EXIT_OK
        issued = issue_certificate(
            args.dir, args.name, days=args.days, server=args.server, sans=args.san, force=args.force, owner=args.owner
        )
    except CertificateError as error:
        print(f"sghost certs: {error}", file=sys.stderr)
        return EXIT_FAILURE
    kind = "broker (server)" if args.server else "client"
    print(f"{kind} certificate CN={args.name} written to {issued.directory}/, valid until {_date(issued)}")
    if args.server:
        print(f"mosquitto: certfile {issued.certificate}, keyfile {issued.key}, cafile {issued.ca_certificate}")
    else:
        print(f'manifest: certificate_directory = "{issued.directory}"')
    if args.owner:
        print(f"{issued.directory}/ and its key belong to {args.owner} (key mode 0600)")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``sghost certs`` on its own: ``main(["init", "--dir", "certs"])``."""
    parser = argparse.ArgumentParser(prog="sghost certs", description="create a CA and TLS certificates")
    _fill_certs_parser(parser)
    args = parser.parse_args(argv)
    return int(args.handler(args))


# ---------------------------------------------------------------------------
# Helpers


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _date(issued: Issued) -> str:
    return issued.not_after.strftime("%Y-%m-%d %H:%M UTC")


def _owner_account(owner: str | None) -> tuple[int, int] | None:
    """``(uid, gid)`` of ``owner``; checked before anything is written."""
    if owner is None:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(owner)
    except KeyError:
        raise CertificateError(f"--owner {owner}: no such user on this machine; expected an existing user") from None
    if os.geteuid() not in (0, entry.pw_uid):
        raise CertificateError(f"--owner {owner}: only root can give files to another user; run it as root")
    return entry.pw_uid, entry.pw_gid


def _check_days(days: int) -> None:
    if days < 1:
        raise CertificateError(f"--days {days}: expected a whole number of days, at least 1")


def _check_name(name: str) -> None:
    try:
        validate_name(name, "certificate name")
    except ValueError as error:
        raise CertificateError(f"{error} (NAME is a resource name, the [host] name or the broker's)") from None
    if name in (".", "..", CA_DIRECTORY) or name.startswith("."):
        raise CertificateError(f"{name!r} cannot be a certificate name: it is reserved or hidden; choose another")


def _load_ca(base: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    ca_dir = base / CA_DIRECTORY
    key_path, cert_path = ca_dir / CA_KEY, ca_dir / CA_CERTIFICATE
    missing = [str(path) for path in (key_path, cert_path) if not path.is_file()]
    if missing:
        raise CertificateError(
            f"no CA in {ca_dir} (missing {', '.join(missing)}); run 'sghost certs init --dir {base}' first"
        )
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (ValueError, TypeError) as error:
        raise CertificateError(f"cannot read the CA in {ca_dir}: {error}; expected the files 'init' wrote") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{key_path}: expected an EC private key as written by 'sghost certs init'")
    if certificate.not_valid_after_utc <= _utcnow():
        raise CertificateError(f"the CA in {ca_dir} expired on {certificate.not_valid_after_utc:%Y-%m-%d}; "
                               "create a new one with 'sghost certs init --force' and reissue every certificate")
    return key, certificate


def _refuse_overwrite(paths: list[Path], force: bool, what: str) -> None:
    existing = [str(path) for path in paths if path.exists()]
    if existing and not force:
        raise CertificateError(
            f"{existing[0]} exists: refusing to replace {what}; add --force to replace it (e.g. to rotate)"
        )


def _alternative_names(names: Iterable[str]) -> x509.SubjectAlternativeName:
    from cryptography import x509
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    from cryptography import x509
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _make_directory(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _write_private(path: Path, data: bytes) -> None:
    _write_atomically(path, data, 0o600)


def _write_public(path: Path, data: bytes) -> None:
    _write_atomically(path, data, 0o644)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write a new file with ``mode`` from its creation on, then rename it into place."""
    import tempfile  # here: sghost start imports this module, and tempfile brings shutil

    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
