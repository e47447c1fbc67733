"""A deployment document: the signed desired state of one gateway.

The format is the interface operators' own tools make and check, so it is
plain JSON::

    {"host": "gw1", "sequence": 1733..., "manifest": "...", "requirements": [...],
     "signature": "<base64 Ed25519 signature>"}

The signature covers the UTF-8 bytes of every other field as compact JSON with
sorted keys and non-ASCII characters kept as they are (:func:`signed_bytes`).
A deployment's id is the first 12 hex digits of the SHA-256 of its signature.

This module imports ``cryptography`` only inside the functions that need it,
so a host without the ``deploy`` extra can still read a document's fields and
say what is missing.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_DOCUMENT_BYTES = 1024 * 1024
"""Documents larger than this are refused by ``sign`` and ``push`` and rejected by the gateway."""

SIGNED_FIELDS = ("host", "sequence", "manifest", "requirements")

INSTALL_HINT = "deployments need the 'cryptography' package: pip install 'sghost[deploy]'"


class DocumentError(ValueError):
    """A document that cannot be accepted; the text says why and what is expected."""


@dataclass(frozen=True)
class Deployment:
    """A parsed deployment document (its signature not yet checked)."""

    host: str
    sequence: int
    manifest: str
    requirements: tuple[str, ...]
    signature: str

    @property
    def id(self) -> str:
        return deployment_id(self.signature)

    def fields(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "sequence": self.sequence,
            "manifest": self.manifest,
            "requirements": list(self.requirements),
        }

    def to_json(self) -> str:
        return json.dumps({**self.fields(), "signature": self.signature}, ensure_ascii=False)


def signed_bytes(fields: Mapping[str, Any]) -> bytes:
    """The exact bytes a signature covers: compact, sorted-key JSON of the unsigned fields, UTF-8."""
    unsigned = {key: value for key, value in fields.items() if key != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def deployment_id(signature: str) -> str:
    """The first 12 hex digits of the SHA-256 of the signature text."""
    import hashlib  # here: it loads OpenSSL's libcrypto (about 4 MiB), which the supervisor needs only for a deployment

    return hashlib.sha256(signature.encode("utf-8")).hexdigest()[:12]


def parse(data: bytes | str) -> Deployment:
    """A document's fields, checked for shape and size; raises :class:`DocumentError`."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise DocumentError(f"document is {len(raw)} bytes; at most {MAX_DOCUMENT_BYTES} (1 MiB) are accepted")
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DocumentError(f"document is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise DocumentError("document must be a JSON object with host, sequence, manifest, requirements, signature")
    return _from_fields(value)


def _from_fields(value: dict[str, Any]) -> Deployment:
    expected = {*SIGNED_FIELDS, "signature"}
    missing = sorted(expected - value.keys())
    if missing:
        raise DocumentError(f"document lacks {', '.join(missing)}")
    extra = sorted(value.keys() - expected)
    if extra:
        allowed = ", ".join(sorted(expected))
        raise DocumentError(f"document has unknown field(s) {', '.join(extra)}; expected only {allowed}")
    host, sequence, manifest = value["host"], value["sequence"], value["manifest"]
    requirements, signature = value["requirements"], value["signature"]
    if not isinstance(host, str) or not host:
        raise DocumentError("host must be a non-empty string (the target host's name)")
    if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0:
        raise DocumentError("sequence must be a non-negative integer")
    if not isinstance(manifest, str):
        raise DocumentError("manifest must be the manifest's text (a string)")
    if not isinstance(requirements, list) or not all(isinstance(line, str) for line in requirements):
        raise DocumentError("requirements must be a list of pip requirement lines (strings)")
    if not isinstance(signature, str) or not signature:
        raise DocumentError("document is unsigned: signature must be the base64 Ed25519 signature")
    return Deployment(host, sequence, manifest, tuple(requirements), signature)


def sign(fields: Mapping[str, Any], private_key: Any) -> Deployment:
    """Sign ``fields`` (host, sequence, manifest, requirements) with an Ed25519 private key."""
    document = _from_fields({**fields, "signature": "-"})
    signature = base64.b64encode(private_key.sign(signed_bytes(document.fields()))).decode("ascii")
    signed = Deployment(document.host, document.sequence, document.manifest, document.requirements, signature)
    size = len(signed.to_json().encode("utf-8"))
    if size > MAX_DOCUMENT_BYTES:
        raise DocumentError(f"signed document would be {size} bytes; at most {MAX_DOCUMENT_BYTES} (1 MiB) are accepted")
    return signed


def verify(document: Deployment, trusted_keys: Iterable[Any]) -> None:
    """Raise :class:`DocumentError` unless one of the trusted Ed25519 public keys signed ``document``."""
    from cryptography.exceptions import InvalidSignature

    try:
        signature = base64.b64decode(document.signature, validate=True)
    except (binascii.Error, ValueError):
        raise DocumentError("signature is not base64") from None
    message = signed_bytes(document.fields())
    for key in trusted_keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return
    raise DocumentError("signature does not match any trusted key (signed by another key, or altered after signing)")


def load_private_key(path: Path) -> Any:
    """An Ed25519 private key from a PEM (PKCS#8) file; the error names the file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as error:
        raise DocumentError(f"{path}: cannot read the fleet key: {error.strerror}") from None
    except (ValueError, TypeError) as error:
        raise DocumentError(f"{path}: not an unencrypted PEM private key: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise DocumentError(f"{path}: expected an Ed25519 private key (sghost deploy keygen makes one)")
    return key


def load_public_key(path: Path) -> Any:
    """An Ed25519 public key from a PEM (SubjectPublicKeyInfo) file; the error names the file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as error:
        raise DocumentError(f"{path}: cannot read the trusted key: {error.strerror}") from None
    except ValueError as error:
        raise DocumentError(f"{path}: not a PEM public key: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise DocumentError(f"{path}: expected an Ed25519 public key (the fleet.pub that sghost deploy keygen writes)")
    return key
