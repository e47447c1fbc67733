"""The deployment document: canonical bytes, signatures, ids and the checks on its shape."""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sghost.deploy import document
from sghost.deploy.document import DocumentError

FIELDS = {"host": "gw1", "sequence": 7, "manifest": '[host]\nname = "gw1"\n# größe\n', "requirements": []}


def test_a_signed_document_verifies_with_its_key_and_not_with_another() -> None:
    key = Ed25519PrivateKey.generate()
    signed = document.sign(FIELDS, key)
    parsed = document.parse(signed.to_json())
    document.verify(parsed, [key.public_key()])
    with pytest.raises(DocumentError, match="does not match any trusted key"):
        document.verify(parsed, [Ed25519PrivateKey.generate().public_key()])


def test_the_signature_covers_compact_sorted_json_with_non_ascii_kept() -> None:
    key = Ed25519PrivateKey.generate()
    signed = document.sign(FIELDS, key)
    expected = json.dumps(FIELDS, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert document.signed_bytes(signed.fields()) == expected
    assert "größe".encode() in expected
    assert signed.id == hashlib.sha256(signed.signature.encode()).hexdigest()[:12]


def test_an_altered_document_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    altered = json.loads(document.sign(FIELDS, key).to_json())
    altered["sequence"] = 8
    with pytest.raises(DocumentError, match="altered after signing"):
        document.verify(document.parse(json.dumps(altered)), [key.public_key()])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"signature": ""}, "unsigned"),
        ({"sequence": "7"}, "sequence must be"),
        ({"requirements": "x==1"}, "requirements must be"),
        ({"extra": 1}, "unknown field"),
    ],
)
def test_a_malformed_document_says_what_is_expected(change: dict, message: str) -> None:
    with pytest.raises(DocumentError, match=message):
        document.parse(json.dumps({**FIELDS, "signature": "c2ln", **change}))


def test_a_document_over_one_mebibyte_is_refused_by_sign_and_parse() -> None:
    big = {**FIELDS, "manifest": "#" * document.MAX_DOCUMENT_BYTES}
    with pytest.raises(DocumentError, match="1 MiB"):
        document.sign(big, Ed25519PrivateKey.generate())
    with pytest.raises(DocumentError, match="1 MiB"):
        document.parse(json.dumps({**big, "signature": "c2ln"}))
