"""Verifying an erasure receipt offline: the document `GET /v1/erasures/{id}/receipt`
answered, and the deployment's key set (`/.well-known/jwks.json`), nothing else — no
vault, no database, no network.

A receipt with a `jws` is checked as a compact JWS (RFC 7515) with joserfc: `alg`
`Ed25519` (RFC 9864) only, the key named by `kid` from the key set, `typ`
`datavault-erasure-receipt`. Its payload must be the RFC 8785 canonical JSON of the
`receipt` shown beside it, so what a reader sees is what was signed. A receipt issued
before the JWS has only `signature`, the detached Ed25519 signature over the same
canonical bytes; it is checked with the same key set. Where both are present both must
hold. Every failure raises `ReceiptInvalid`; nothing returns False.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from datavault_client._fields import Fields
from datavault_client.errors import ReceiptInvalid, UnexpectedResponse
from datavault_client.models import ReceiptDocument

ALG: Final = "Ed25519"
JWS_TYPE: Final = "datavault-erasure-receipt"
RECEIPT_TYPE: Final = "datavault.erasure-receipt"
# The receipt formats this client knows what they say.
VERSIONS: Final = frozenset({1})

JsonInput = Mapping[str, Any] | str | bytes


@dataclass(frozen=True)
class VerifiedReceipt:
    """What a verified receipt states, read from the signed bytes. `claims` is the
    whole signed receipt."""

    key_id: str
    issuer: str
    tenant_id: str
    erasure_id: str
    subject_ref_hash: str
    requested_at: datetime
    completed_at: datetime | None
    final: bool
    shredded: list[dict[str, Any]]
    held: list[dict[str, Any]]
    retained: list[dict[str, Any]]
    backups_unreadable_after: datetime | None
    ledger_seq: int | None
    ledger_head: str | None
    claims: dict[str, Any]


def canonical_json(receipt: Mapping[str, Any]) -> bytes:
    """RFC 8785 for what a receipt holds (strings, integers, booleans, null, lists,
    objects): sorted keys, no spaces, UTF-8. Anything else (a float) is refused, as its
    canonical form would differ from Python's."""
    _check_plain(receipt)
    return json.dumps(receipt, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def verify_receipt(
    document: JsonInput | ReceiptDocument,
    jwks: JsonInput,
    *,
    issuer: str | None = None,
    erasure_id: str | None = None,
) -> VerifiedReceipt:
    """Verify a receipt document against a JWK set. `issuer` (the deployment's public
    URL) and `erasure_id`, when given, must be what the receipt states."""
    doc = document.document if isinstance(document, ReceiptDocument) else _load(document)
    key_id, receipt, token, signature = _parts(doc)
    signed_bytes = _canonical_or_invalid(receipt)
    if token is None and signature is None:
        raise ReceiptInvalid("the receipt carries neither a JWS nor a signature")
    keys = _ed25519_keys(_load(jwks))
    if key_id not in keys:
        raise ReceiptInvalid("the key set has no Ed25519 signing key with the receipt's key_id")
    if token is not None:
        _check_jws(token, keys, key_id, signed_bytes)
    if signature is not None:
        _check_detached(signature, keys[key_id], signed_bytes)
    return _claims(key_id, receipt, issuer=issuer, erasure_id=erasure_id)


def _load(value: JsonInput) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    try:
        loaded = json.loads(value)
    except ValueError:
        raise ReceiptInvalid("not JSON") from None
    if not isinstance(loaded, Mapping):
        raise ReceiptInvalid("not a JSON object")
    return loaded


def _parts(doc: Mapping[str, Any]) -> tuple[str, dict[str, Any], str | None, str | None]:
    try:
        fields = Fields(doc, "receipt document")
        if fields.text("alg") != ALG:
            raise ReceiptInvalid(f"alg is not {ALG}")
        return (fields.text("key_id"), fields.object("receipt").raw(), fields.opt_text("jws"),
                fields.opt_text("signature"))  # fmt: skip
    except UnexpectedResponse as exc:
        raise ReceiptInvalid(str(exc)) from None


def _canonical_or_invalid(receipt: Mapping[str, Any]) -> bytes:
    try:
        return canonical_json(receipt)
    except ValueError as exc:
        raise ReceiptInvalid(str(exc)) from None


def _check_plain(value: object) -> None:
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, list):
        for item in value:
            _check_plain(item)
        return
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        for item in value.values():
            _check_plain(item)
        return
    raise ValueError(f"a receipt holds no {type(value).__name__}")


def _ed25519_keys(jwks: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The set's Ed25519 signature keys by kid (other keys are ignored, not trusted)."""
    found: dict[str, dict[str, Any]] = {}
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise ReceiptInvalid("the key set has no `keys` list")
    for key in keys:
        if not isinstance(key, Mapping) or "d" in key:
            continue  # never a private key, even one published by mistake
        if (key.get("kty"), key.get("crv")) != ("OKP", "Ed25519"):
            continue
        if key.get("use", "sig") != "sig" or key.get("alg", ALG) != ALG:
            continue
        kid, x = key.get("kid"), key.get("x")
        if isinstance(kid, str) and isinstance(x, str):
            found[kid] = {"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": x}
    return found


def _check_jws(token: str, keys: Mapping[str, dict[str, Any]], key_id: str, signed: bytes) -> None:
    try:
        key_set = KeySet.import_key_set({"keys": list(keys.values())})
        verified = jws.deserialize_compact(token, key_set, algorithms=[ALG])
    except (JoseError, ValueError, KeyError, TypeError):
        raise ReceiptInvalid("the JWS does not verify with the key set") from None
    header = verified.headers()
    if header.get("alg") != ALG or header.get("kid") != key_id or header.get("typ") != JWS_TYPE:
        raise ReceiptInvalid("the JWS header is not that of this receipt")
    if verified.payload != signed:
        raise ReceiptInvalid("the receipt shown is not the one the JWS signs")


def _check_detached(signature: str, jwk: Mapping[str, Any], signed: bytes) -> None:
    try:
        public = Ed25519PublicKey.from_public_bytes(_b64url(jwk["x"]))
        public.verify(_b64url(signature), signed)
    except (InvalidSignature, ValueError, binascii.Error):
        raise ReceiptInvalid("the signature does not verify with the key set") from None


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _claims(
    key_id: str, receipt: dict[str, Any], *, issuer: str | None, erasure_id: str | None
) -> VerifiedReceipt:
    try:
        f = Fields(receipt, "receipt")
        if f.text("type") != RECEIPT_TYPE or f.integer("v") not in VERSIONS:
            raise ReceiptInvalid("not an erasure receipt of a version this client knows")
        if issuer is not None and f.text("issuer").rstrip("/") != issuer.rstrip("/"):
            raise ReceiptInvalid("the receipt is from another issuer")
        if erasure_id is not None and f.text("erasure_id") != erasure_id:
            raise ReceiptInvalid("the receipt is about another erasure")
        ledger = f.opt_object("ledger")
        return VerifiedReceipt(
            key_id=key_id,
            issuer=f.text("issuer"),
            tenant_id=f.text("tenant_id"),
            erasure_id=f.text("erasure_id"),
            subject_ref_hash=f.text("subject_ref_hash"),
            requested_at=f.time("requested_at"),
            completed_at=f.opt_time("completed_at"),
            final=f.flag("final"),
            shredded=[s.raw() for s in f.objects("shredded")],
            held=[h.raw() for h in f.objects("held")],
            retained=[r.raw() for r in f.objects("retained")],
            backups_unreadable_after=f.opt_time("backups_unreadable_after"),
            ledger_seq=ledger.opt_integer("seq") if ledger else None,
            ledger_head=ledger.opt_text("head") if ledger else None,
            claims=receipt,
        )
    except UnexpectedResponse as exc:
        raise ReceiptInvalid(str(exc)) from None
