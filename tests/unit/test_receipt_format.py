"""Erasure receipts: canonical JSON, the receipt shape, signing and offline verification."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from crypto import signing
from vault.services.receipt_verify import ReceiptInvalid, load_receipt_json, verify_signed_receipt
from vault.services.receipts import (
    b64url,
    b64url_decode,
    build_receipt,
    canonical_json,
    jwk,
    key_id_for,
    sign_receipt,
)

REQUESTED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
COMPLETED = datetime(2025, 3, 2, 8, 30, 15, tzinfo=UTC)


def _receipt(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "issuer": "https://vault.example.com",
        "tenant_id": uuid.UUID("11111111-2222-3333-4444-555555555555"),
        "erasure_id": uuid.UUID("66666666-7777-8888-9999-aaaaaaaaaaaa"),
        "subject_ref_hash": "AB" * 32,
        "requested_at": REQUESTED,
        "completed_at": COMPLETED,
        "final": True,
        "shredded": [
            {"category": "recordings", "key_id": uuid.UUID(int=7), "destroyed_at": COMPLETED}
        ],
        "held": [],
        "retained": [{"category": "billing", "until": datetime(2032, 1, 1, tzinfo=UTC)}],
        "backups_unreadable_after": datetime(2025, 5, 1, tzinfo=UTC),
    }
    fields.update(changes)
    return build_receipt(**fields)


def _signed(receipt: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    key = signing.generate_signing_key()
    public = signing.public_key(key)
    kid = key_id_for(public)
    document = sign_receipt(key, kid, receipt if receipt is not None else _receipt())
    return document, {"keys": [jwk(kid, public)]}


# --- canonical JSON ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        _receipt(),
        {"b": 1, "a": [True, False, None, 'ü €\n\t\u0001"\\/'], "A": {"z": -3, "": ""}},
        {"emoji": "😀", "é": "é", "\u00e9\u0301": 2**53 - 1, "neg": -(2**53 - 1)},
        [],
        "just a string",
    ],
)
def test_canonical_json_is_the_api_md_formula(value: Any) -> None:
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(value) == expected.encode("utf-8")


def test_canonical_json_sorts_keys_and_has_no_whitespace() -> None:
    assert canonical_json({"b": [1, {"d": None, "c": "x"}], "a": True}) == (
        b'{"a":true,"b":[1,{"c":"x","d":null}]}'
    )
    assert canonical_json({"k": "é😀"}) == '{"k":"é😀"}'.encode()


@pytest.mark.parametrize(
    "value", [1.0, {"a": 0.5}, [1, [2.5]], {"nan": float("nan")}, {"inf": float("inf")}]
)
def test_floats_are_refused(value: Any) -> None:
    with pytest.raises(TypeError, match="float"):
        canonical_json(value)


@pytest.mark.parametrize(
    "value",
    [
        {"big": 2**53},
        {"small": -(2**53)},
        {"😀": 1},  # RFC 8785 would order non-BMP keys differently from Python
        {"lone": "\ud800"},
    ],
)
def test_values_outside_the_canonical_range_are_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        canonical_json(value)


@pytest.mark.parametrize("value", [{1: "int key"}, {"t": (1, 2)}, {"b": b"x"}, {"s": {1}}])
def test_non_json_types_are_refused(value: Any) -> None:
    with pytest.raises(TypeError):
        canonical_json(value)


# --- the receipt ---------------------------------------------------------------------


def test_receipt_has_the_api_md_fields() -> None:
    receipt = _receipt()
    assert receipt == {
        "v": 1,
        "type": "datavault.erasure-receipt",
        "issuer": "https://vault.example.com",
        "tenant_id": "11111111-2222-3333-4444-555555555555",
        "erasure_id": "66666666-7777-8888-9999-aaaaaaaaaaaa",
        "subject_ref_hash": "ab" * 32,
        "requested_at": "2025-03-01T12:00:00Z",
        "completed_at": "2025-03-02T08:30:15Z",
        "final": True,
        "shredded": [
            {
                "category": "recordings",
                "key_id": "00000000-0000-0000-0000-000000000007",
                "destroyed_at": "2025-03-02T08:30:15Z",
            }
        ],
        "held": [],
        "retained": [{"category": "billing", "until": "2032-01-01T00:00:00Z"}],
        "backups_unreadable_after": "2025-05-01T00:00:00Z",
    }
    canonical_json(receipt)


def test_interim_receipt_and_other_time_zones() -> None:
    cet = timezone(timedelta(hours=1))
    receipt = _receipt(
        final=False,
        completed_at=None,
        requested_at=datetime(2025, 3, 1, 13, 0, tzinfo=cet),
        subject_ref_hash=bytes(range(32)),
        held=[{"category": "support", "hold_ids": [uuid.UUID(int=1)]}],
    )
    assert receipt["final"] is False
    assert receipt["completed_at"] is None
    assert receipt["requested_at"] == "2025-03-01T12:00:00Z"
    assert receipt["subject_ref_hash"] == bytes(range(32)).hex()
    assert receipt["held"] == [
        {"category": "support", "hold_ids": ["00000000-0000-0000-0000-000000000001"]}
    ]


def test_receipt_builder_refuses_what_cannot_be_signed() -> None:
    with pytest.raises(ValueError, match="completed_at"):
        _receipt(completed_at=None)
    with pytest.raises(ValueError):
        _receipt(subject_ref_hash="not hex")
    with pytest.raises(ValueError, match="timezone"):
        _receipt(requested_at=datetime(2025, 3, 1, 12, 0))
    with pytest.raises(TypeError, match="float"):
        _receipt(retained=[{"category": "billing", "years": 7.5}])


# --- signing and verifying -----------------------------------------------------------


def test_sign_verify_round_trip() -> None:
    document, jwks = _signed()
    assert set(document) == {"receipt", "jws", "signature", "key_id", "alg"}
    assert document["alg"] == "Ed25519"
    assert document["key_id"].startswith("rk-")
    assert "=" not in document["signature"]
    assert len(b64url_decode(document["signature"])) == 64
    # What a tenant would do: the file as JSON text, parsed again.
    reparsed = load_receipt_json(json.dumps(document, indent=2))
    assert verify_signed_receipt(reparsed, jwks) == document["receipt"]


def test_signature_is_plain_ed25519_over_the_canonical_bytes() -> None:
    document, jwks = _signed()
    public = base64.urlsafe_b64decode(jwks["keys"][0]["x"] + "=")
    signature = base64.urlsafe_b64decode(document["signature"] + "==")
    signing.verify(public, signature, canonical_json(document["receipt"]))


def test_jwk_shape() -> None:
    key = signing.generate_signing_key()
    public = signing.public_key(key)
    kid = key_id_for(public)
    assert kid == key_id_for(public)
    assert len(kid) == len("rk-") + 16
    assert jwk(kid, public) == {
        "kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64url(public), "use": "sig",
        "alg": "Ed25519",
    }  # fmt: skip
    assert b64url_decode(b64url(public)) == public


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("erasure_id", "66666666-7777-8888-9999-aaaaaaaaaaab"),
        ("final", False),
        ("completed_at", "2025-03-02T08:30:16Z"),
        ("shredded", []),
        ("extra", "field"),
    ],
)
def test_a_changed_field_fails(field: str, value: Any) -> None:
    document, jwks = _signed()
    tampered = copy.deepcopy(document)
    tampered["receipt"][field] = value
    with pytest.raises(ReceiptInvalid, match=r"^signature does not verify$"):
        verify_signed_receipt(tampered, jwks)


def test_a_changed_signature_fails() -> None:
    document, jwks = _signed()
    raw = bytearray(b64url_decode(document["signature"]))
    raw[10] ^= 0x01
    tampered = {**document, "signature": b64url(bytes(raw))}
    with pytest.raises(ReceiptInvalid, match=r"^signature does not verify$"):
        verify_signed_receipt(tampered, jwks)


def test_a_signature_by_another_key_with_the_same_kid_fails() -> None:
    document, jwks = _signed()
    other, _ = _signed()
    with pytest.raises(ReceiptInvalid, match=r"^signature does not verify$"):
        verify_signed_receipt({**document, "signature": other["signature"]}, jwks)


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "not base64!",
        "A" * 85 + "==",  # padded
        "+/" * 43,  # standard, not URL-safe, alphabet
        "A" * 85,  # 63 bytes
        "A" * 87,  # 65 bytes
        "A" * 85 + "B",  # 64 bytes, but non-zero trailing bits: not canonical
    ],
)
def test_a_malformed_signature_fails(signature: str) -> None:
    document, jwks = _signed()
    with pytest.raises(ReceiptInvalid, match="signature"):
        verify_signed_receipt({**document, "signature": signature}, jwks)


def test_an_unknown_kid_fails() -> None:
    document, jwks = _signed()
    with pytest.raises(ReceiptInvalid, match="unknown key id 'rk-0000000000000000'"):
        verify_signed_receipt({**document, "key_id": "rk-0000000000000000"}, jwks)
    with pytest.raises(ReceiptInvalid, match="unknown key id"):
        verify_signed_receipt(document, {"keys": []})


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "none", "", None])
def test_a_wrong_alg_fails(alg: Any) -> None:
    document, jwks = _signed()
    with pytest.raises(ReceiptInvalid, match="unsupported alg"):
        verify_signed_receipt({**document, "alg": alg}, jwks)


def test_a_key_of_another_type_fails() -> None:
    document, jwks = _signed()
    key = jwks["keys"][0]
    without_x = {k: v for k, v in key.items() if k != "x"}
    bad_keys = [
        {**key, "crv": "X25519"},
        {**key, "kty": "EC"},
        {**key, "alg": "ES256"},
        {**key, "x": key["x"][:-2]},
        without_x,
    ]
    for bad in bad_keys:
        with pytest.raises(ReceiptInvalid, match=key["kid"]):
            verify_signed_receipt(document, {"keys": [bad]})


def test_retired_keys_still_verify() -> None:
    old_document, old_jwks = _signed()
    new_document, new_jwks = _signed()
    both = {"keys": old_jwks["keys"] + new_jwks["keys"]}
    assert verify_signed_receipt(old_document, both) == old_document["receipt"]
    assert verify_signed_receipt(new_document, both) == new_document["receipt"]


@pytest.mark.parametrize(
    "document",
    [[], "receipt", {"receipt": {}, "signature": "x", "alg": "Ed25519"}],
)
def test_not_a_signed_receipt(document: Any) -> None:
    _, jwks = _signed()
    with pytest.raises(ReceiptInvalid, match="not a signed receipt"):
        verify_signed_receipt(document, jwks)


def test_a_signed_object_that_is_not_a_receipt_fails() -> None:
    document, jwks = _signed({"v": 2, "type": "datavault.erasure-receipt"})
    with pytest.raises(ReceiptInvalid, match="not a version 1"):
        verify_signed_receipt(document, jwks)


def test_ambiguous_json_is_refused() -> None:
    document, _ = _signed()
    text = json.dumps(document)
    with pytest.raises(ReceiptInvalid, match="duplicate key 'final'"):
        load_receipt_json(text.replace('"final": true', '"final": false, "final": true'))
    with pytest.raises(ReceiptInvalid, match="NaN"):
        load_receipt_json('{"a": NaN}')
    with pytest.raises(ValueError):
        load_receipt_json(b"\xff not utf-8")
    with pytest.raises(ValueError):
        load_receipt_json("{not json")


def test_a_fault_deep_in_a_long_value_is_named_where_it_is() -> None:
    """The check runs without paths first (a ledger object's 5,000 entries); a fault is
    still named exactly."""
    value = {"entries": [{"a": 1}] * 1000 + [{"a": 1.5}]}
    with pytest.raises(TypeError, match=r"^\$\.entries\[1000\]\.a: floats"):
        canonical_json(value)
    with pytest.raises(ValueError, match=r"^\$\.entries\[2\]: object key outside"):
        canonical_json({"entries": [{}, {"é": 1}, {"😀": 1}]})
