"""The receipt's compact JWS (API.md "Erasure"): its exact header and payload, every way to
alter or swap it refused, and receipts issued before it (detached signature only, key
sets that said "EdDSA") still verifying."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crypto import signing
from crypto.jws import b64url, b64url_decode, sign_compact
from crypto.secrets import SecretBytes
from vault.services.receipt_verify import ReceiptInvalid, verify_receipt, verify_signed_receipt
from vault.services.receipts import build_receipt, canonical_json, jwk, key_id_for, sign_receipt

VECTOR = Path(__file__).parent / "vectors" / "receipt-before-jws.json"
NOW = datetime(2025, 3, 2, 8, 30, 15, tzinfo=UTC)


def _receipt(erasure_id: uuid.UUID | None = None) -> dict[str, Any]:
    return build_receipt(
        issuer="https://vault.example.com",
        tenant_id=uuid.UUID(int=1),
        erasure_id=erasure_id or uuid.UUID(int=2),
        subject_ref_hash="cd" * 32,
        requested_at=NOW,
        completed_at=NOW,
        final=True,
        shredded=[{"category": "recording", "key_id": uuid.UUID(int=3), "destroyed_at": NOW}],
        held=[],
        retained=[],
        backups_unreadable_after=datetime(2025, 5, 1, tzinfo=UTC),
        ledger={"seq": 4, "head": "ef" * 32},
    )


class _Key:
    def __init__(self) -> None:
        self.secret = signing.generate_signing_key()
        self.public = signing.public_key(self.secret)
        self.kid = key_id_for(self.public)

    def sign(self, receipt: dict[str, Any] | None = None) -> dict[str, Any]:
        return sign_receipt(self.secret, self.kid, receipt or _receipt())

    def jws(self, header: dict[str, Any] | bytes, payload: bytes) -> str:
        raw = header if isinstance(header, bytes) else json.dumps(header).encode()
        return sign_compact(self.secret, raw, payload)


@pytest.fixture
def key() -> _Key:
    return _Key()


def _jwks(*keys: _Key) -> dict[str, Any]:
    return {"keys": [jwk(k.kid, k.public) for k in keys]}


def _parts(token: str) -> tuple[dict[str, Any], bytes, bytes]:
    header, payload, signature = token.split(".")
    return json.loads(b64url_decode(header)), b64url_decode(payload), b64url_decode(signature)


def test_jws_header_and_payload_are_exactly_what_api_md_says(key: _Key) -> None:
    document = key.sign()
    header, payload, signature = _parts(document["jws"])
    assert header == {"alg": "Ed25519", "kid": key.kid, "typ": "datavault-erasure-receipt"}
    assert payload == canonical_json(document["receipt"])
    # The header is canonical JSON too, so a receipt and a key give one JWS.
    assert document["jws"].split(".")[0] == b64url(canonical_json(header))
    assert key.sign(document["receipt"])["jws"] == document["jws"]
    # The detached signature is over the same bytes the JWS carries.
    assert b64url_decode(document["signature"]) == signing.sign(key.secret, payload)
    signing.verify(key.public, signature, document["jws"].rsplit(".", 1)[0].encode())
    assert verify_receipt(document, _jwks(key)).key_id == key.kid


def test_the_jws_alone_verifies(key: _Key) -> None:
    document = key.sign()
    verified = verify_receipt(document["jws"], _jwks(key))
    assert verified.receipt == document["receipt"] and verified.key_id == key.kid


def test_a_jws_carrying_another_receipt_is_refused(key: _Key) -> None:
    document = key.sign()
    other = key.sign(_receipt(uuid.UUID(int=99)))
    swapped = {**document, "jws": other["jws"]}  # both validly signed, by the same key
    with pytest.raises(ReceiptInvalid, match=r"^jws does not match the receipt$"):
        verify_signed_receipt(swapped, _jwks(key))


def test_a_jws_by_another_listed_key_is_refused(key: _Key) -> None:
    document = key.sign()
    second = _Key()
    by_second = second.sign(document["receipt"])
    with pytest.raises(ReceiptInvalid, match=r"^jws is signed by another key than key_id$"):
        verify_signed_receipt({**document, "jws": by_second["jws"]}, _jwks(key, second))


def test_a_changed_jws_payload_does_not_verify(key: _Key) -> None:
    document = key.sign()
    header, _, signature = document["jws"].split(".")
    changed = copy.deepcopy(document["receipt"])
    changed["shredded"] = []
    forged = f"{header}.{b64url(canonical_json(changed))}.{signature}"
    with pytest.raises(ReceiptInvalid, match=r"^jws does not verify$"):
        verify_receipt(forged, _jwks(key))
    # In the document too, even with the receipt changed to match: the detached
    # signature fails first, and the JWS would fail after it.
    with pytest.raises(ReceiptInvalid, match="does not verify"):
        verify_signed_receipt({**document, "receipt": changed, "jws": forged}, _jwks(key))
    with pytest.raises(ReceiptInvalid, match=r"^jws does not verify$"):
        verify_signed_receipt({**document, "jws": forged}, _jwks(key))


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ({"alg": "none", "kid": "K", "typ": "datavault-erasure-receipt"}, "unsupported jws alg"),
        ({"alg": "EdDSA", "kid": "K", "typ": "datavault-erasure-receipt"}, "unsupported jws alg"),
        ({"alg": "HS256", "kid": "K", "typ": "datavault-erasure-receipt"}, "unsupported jws alg"),
        ({"alg": "Ed25519", "kid": "K", "typ": "JWT"}, "jws header is not"),
        ({"alg": "Ed25519", "kid": "K"}, "jws header is not"),
        (
            {"alg": "Ed25519", "kid": "K", "typ": "datavault-erasure-receipt", "crit": ["x"]},
            "jws header is not",
        ),
        ({"alg": "Ed25519", "typ": "datavault-erasure-receipt"}, "names no kid"),
        (b"not json", "its header is not JSON"),
        (b'{"alg":"Ed25519","alg":"Ed25519","kid":"K","typ":"x"}', "duplicate key"),
    ],
)
def test_a_jws_header_the_vault_never_writes_is_refused(
    key: _Key, header: dict[str, Any] | bytes, error: str
) -> None:
    if isinstance(header, dict) and header.get("kid") == "K":
        header = {**header, "kid": key.kid}
    elif isinstance(header, bytes):
        header = header.replace(b'"K"', json.dumps(key.kid).encode())
    token = key.jws(header, canonical_json(_receipt()))
    with pytest.raises(ReceiptInvalid, match=error):
        verify_receipt(token, _jwks(key))


def test_a_jws_payload_that_is_not_the_canonical_receipt_is_refused(key: _Key) -> None:
    header = {"alg": "Ed25519", "kid": key.kid, "typ": "datavault-erasure-receipt"}
    pretty = json.dumps(_receipt(), indent=1).encode()  # the same values, other bytes
    for payload in (pretty, b"[1, 2]", b"\xff"):
        with pytest.raises(ReceiptInvalid, match="canonical JSON"):
            verify_receipt(key.jws(header, payload), _jwks(key))
    not_a_receipt = canonical_json({"v": 1, "type": "something-else"})
    with pytest.raises(ReceiptInvalid, match="not a version 1"):
        verify_receipt(key.jws(header, not_a_receipt), _jwks(key))


@pytest.mark.parametrize("jws", ["a.b", "a.b.c", "", 17, ["x"]])
def test_a_malformed_jws_in_a_document_is_refused(key: _Key, jws: Any) -> None:
    with pytest.raises(ReceiptInvalid, match="jws is malformed"):
        verify_signed_receipt({**key.sign(), "jws": jws}, _jwks(key))


def test_a_receipt_issued_before_the_jws_still_verifies() -> None:
    """Fixed bytes: a receipt and key set exactly as the vault wrote them before."""
    vector = json.loads(VECTOR.read_text())
    document, old_jwks = vector["document"], vector["jwks"]
    assert set(document) == {"receipt", "signature", "key_id", "alg"}
    assert old_jwks["keys"][0]["alg"] == "EdDSA"
    assert verify_signed_receipt(document, old_jwks) == document["receipt"]
    # As the API serves it now (`jws: null`), against the key set as published now.
    now_published = {"keys": [{**old_jwks["keys"][0], "alg": "Ed25519"}]}
    assert verify_signed_receipt({**document, "jws": None}, now_published) == document["receipt"]
    tampered = copy.deepcopy(document)
    tampered["receipt"]["final"] = False
    with pytest.raises(ReceiptInvalid, match=r"^signature does not verify$"):
        verify_signed_receipt(tampered, old_jwks)


def test_the_vector_is_signed_by_the_rfc_8032_test_key_only() -> None:
    vector = json.loads(VECTOR.read_text())
    # RFC 8032 §7.1 TEST 2: a published test key, so the vector holds no real secret.
    seed = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
    public = signing.public_key(SecretBytes(seed))
    assert vector["jwks"]["keys"][0]["x"] == b64url(public)
    assert vector["document"]["key_id"] == key_id_for(public)


def test_new_receipts_verify_against_a_key_set_saved_before(key: _Key) -> None:
    """A tenant's saved copy of the key set says "EdDSA": the key is the same key."""
    saved = {"keys": [{**jwk(key.kid, key.public), "alg": "EdDSA"}]}
    document = key.sign()
    assert verify_signed_receipt(document, saved) == document["receipt"]
    assert verify_receipt(document["jws"], saved).key_id == key.kid
