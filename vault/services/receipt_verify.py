"""Verifying a signed erasure receipt offline, against a JWK set: no database, no network.

`datavault receipt verify`, the console and the tests use this; a tenant can do the same
with any JOSE library (the `jws`) or any Ed25519 library (the detached `signature`).

A signed document is `{receipt, jws, signature, key_id, alg}`. Both signatures are over
the receipt's RFC 8785 canonical JSON, and both must verify under the key `key_id`
names. Receipts issued before the JWS existed have no `jws` (or `"jws": null`, as the
API serves them) and verify by `signature` alone. A bare compact JWS (the value of
`jws`, saved on its own) verifies too: its payload is the receipt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from crypto import jws, signing
from crypto.errors import IntegrityError
from vault.services.receipts import (
    JWK_ALG,
    JWS_TYPE,
    LEGACY_JWK_ALG,
    RECEIPT_TYPE,
    RECEIPT_VERSION,
    SIGNATURE_ALG,
    b64url_decode,
    canonical_json,
    jws_header,
)

_ED25519_PUBLIC_KEY_BYTES: Final = 32
_ED25519_SIGNATURE_BYTES: Final = 64


class ReceiptInvalid(Exception):
    """A signed receipt does not verify; the message says why, never more than that."""


@dataclass(frozen=True)
class VerifiedReceipt:
    receipt: dict[str, Any]
    key_id: str


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ReceiptInvalid(f"duplicate key {key!r} in the document")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ReceiptInvalid(f"{name} is not allowed in a receipt")


def load_receipt_json(data: bytes | str) -> Any:
    """Parse a receipt or JWK-set file. ValueError if it is not JSON at all (including not
    UTF-8); ReceiptInvalid for duplicate object keys or NaN/Infinity, which could make a
    reader see other values than the ones verified."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    return json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)


def _public_key_for(jwks: Any, kid: str) -> bytes:
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list):
        raise ReceiptInvalid("the key set is not a JWK set")
    for key in keys:
        if not isinstance(key, dict) or key.get("kid") != kid:
            continue
        if key.get("kty") != "OKP" or key.get("crv") != "Ed25519":
            raise ReceiptInvalid(f"key {kid} is not an Ed25519 key")
        # "EdDSA": a key set saved before the vault published RFC 9864's name.
        if key.get("alg", JWK_ALG) not in (JWK_ALG, LEGACY_JWK_ALG):
            raise ReceiptInvalid(f"key {kid} is not an Ed25519 signing key")
        if key.get("use", "sig") != "sig":
            raise ReceiptInvalid(f"key {kid} is not an Ed25519 signing key")
        x = key.get("x")
        try:
            public = b64url_decode(x) if isinstance(x, str) else b""
        except ValueError:
            raise ReceiptInvalid(f"key {kid} has a malformed public key") from None
        if len(public) != _ED25519_PUBLIC_KEY_BYTES:
            raise ReceiptInvalid(f"key {kid} has a malformed public key")
        return public
    raise ReceiptInvalid(f"unknown key id {kid!r}")


def _check_receipt_type(receipt: dict[str, Any]) -> None:
    version = receipt.get("v")
    if type(version) is not int or version != RECEIPT_VERSION:
        raise ReceiptInvalid("signed, but not a version 1 datavault erasure receipt")
    if receipt.get("type") != RECEIPT_TYPE:
        raise ReceiptInvalid("signed, but not a version 1 datavault erasure receipt")


def _jws_receipt(token: Any, jwks: Any) -> VerifiedReceipt:
    """The receipt a compact JWS carries, once its signature verifies; its header must be
    exactly the one the vault writes (alg Ed25519, kid, typ), nothing more."""
    try:
        parsed = jws.parse_compact(token)
    except ValueError as exc:
        raise ReceiptInvalid(f"jws is malformed: {exc}") from None
    try:
        header = load_receipt_json(parsed.header)
    except ValueError:
        raise ReceiptInvalid("jws is malformed: its header is not JSON") from None
    if not isinstance(header, dict) or not isinstance(header.get("kid"), str):
        raise ReceiptInvalid("jws is malformed: its header names no kid")
    if header.get("alg") != SIGNATURE_ALG:
        raise ReceiptInvalid(f"unsupported jws alg {header.get('alg')!r} (expected 'Ed25519')")
    if header != jws_header(header["kid"]):
        # Another typ, or members (crit, jku, x5u, ...) the vault never writes.
        raise ReceiptInvalid(f"jws header is not a datavault receipt's (typ {JWS_TYPE})")
    public = _public_key_for(jwks, header["kid"])
    try:
        jws.verify_compact(public, parsed)
    except IntegrityError:
        raise ReceiptInvalid("jws does not verify") from None
    try:
        receipt = load_receipt_json(parsed.payload)
        canonical = canonical_json(receipt)
    except (TypeError, ValueError):
        raise ReceiptInvalid("jws payload is not a receipt's canonical JSON") from None
    if not isinstance(receipt, dict) or canonical != parsed.payload:
        raise ReceiptInvalid("jws payload is not a receipt's canonical JSON")
    _check_receipt_type(receipt)
    return VerifiedReceipt(receipt, header["kid"])


def verify_signed_statement(document: Any, jwks: Any, name: str) -> dict[str, Any]:
    """The statement under `name` of a signed document `{<name>, signature, key_id, alg}`
    whose detached signature verifies under a key of ``jwks``; ReceiptInvalid with the
    reason otherwise. The caller checks the statement's `type`."""
    if not isinstance(document, dict):
        raise ReceiptInvalid(f"not a signed {name}: expected a JSON object")
    fields = (name, "signature", "key_id", "alg")
    missing = [k for k in fields if k not in document]
    if missing:
        raise ReceiptInvalid(f"not a signed {name}: missing {', '.join(missing)}")
    statement, signature, kid, alg = (document[k] for k in fields)
    if alg != SIGNATURE_ALG:
        raise ReceiptInvalid(f"unsupported alg {alg!r} (expected {SIGNATURE_ALG!r})")
    if not isinstance(kid, str):
        raise ReceiptInvalid("key_id must be a string")
    if not isinstance(statement, dict):
        raise ReceiptInvalid(f"{name} must be a JSON object")
    try:
        raw_signature = b64url_decode(signature)
    except ValueError:
        raise ReceiptInvalid("signature is not base64url without padding") from None
    if len(raw_signature) != _ED25519_SIGNATURE_BYTES:
        raise ReceiptInvalid("signature has the wrong length for Ed25519")
    public = _public_key_for(jwks, kid)
    try:
        message = canonical_json(statement)
    except (TypeError, ValueError) as exc:
        raise ReceiptInvalid(f"{name} is not canonical JSON: {exc}") from None
    try:
        signing.verify(public, raw_signature, message)
    except IntegrityError:
        raise ReceiptInvalid("signature does not verify") from None
    return statement


def verify_receipt(document: Any, jwks: Any) -> VerifiedReceipt:
    """The receipt of a signed document (or of a bare compact JWS) whose signatures
    verify under a key of ``jwks``, and that key's id; ReceiptInvalid with the reason
    otherwise."""
    if isinstance(document, str) and document.count(".") == 2:
        return _jws_receipt(document, jwks)
    if not isinstance(document, dict):
        raise ReceiptInvalid("not a signed receipt: expected a JSON object or a compact JWS")
    receipt = verify_signed_statement(document, jwks, "receipt")
    kid = document["key_id"]
    if document.get("jws") is not None:
        # Both forms must say the same thing, under the same key: a reader may look at
        # either.
        carried = _jws_receipt(document["jws"], jwks)
        if carried.key_id != kid:
            raise ReceiptInvalid("jws is signed by another key than key_id")
        if canonical_json(carried.receipt) != canonical_json(receipt):
            raise ReceiptInvalid("jws does not match the receipt")
    _check_receipt_type(receipt)
    return VerifiedReceipt(receipt, kid)


def verify_signed_receipt(document: Any, jwks: Any) -> dict[str, Any]:
    """`verify_receipt`'s receipt."""
    return verify_receipt(document, jwks).receipt
