"""Signed erasure receipts: the format, the deployment's Ed25519 signing key, verification.

A receipt is a JSON object of strings, integers, booleans, null, lists and objects only
(API.md, Erasure). For those types RFC 8785 canonical JSON is exactly Python's
``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` in UTF-8,
provided object keys stay in the Basic Multilingual Plane (RFC 8785 sorts by UTF-16 code
units, Python by code points; the two orders agree there) and integers stay within the
I-JSON range (|n| <= 2**53 - 1). ``canonical_json`` refuses everything else, so a signed
receipt verifies with any RFC 8785 + Ed25519 implementation.

The signing key is created on first start, stored wrapped by the root key (purpose
deployment-secret, bound to its kid) and never leaves this process unwrapped. Retired
keys stay in ``receipt_keys`` with their public half, so old receipts keep verifying.

A signed receipt carries its signature twice over the same canonical bytes: as a compact
JWS (RFC 7515, `alg` "Ed25519" of RFC 9864), which any JOSE library verifies with the
published JWK set, and as the detached `signature` that receipts issued before the JWS
carried alone. Verification (offline, no database): vault/services/receipt_verify.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from crypto import jws, signing
from crypto.context import PURPOSE_DEPLOYMENT_SECRET, KeyContext
from crypto.errors import IntegrityError
from crypto.providers.base import RootKeyProvider
from crypto.secrets import SecretBytes
from vault.db.database import Database
from vault.db.sql import Queries

Q = Queries("receipts")

RECEIPT_VERSION: Final = 1
RECEIPT_TYPE: Final = "datavault.erasure-receipt"
SIGNATURE_ALG: Final = jws.ALG
"""The `alg` of a signed receipt document and of its JWS header (API.md; RFC 9864)."""
JWK_ALG: Final = jws.ALG
"""The `alg` of a published key: RFC 9864's fully-specified "Ed25519"."""
LEGACY_JWK_ALG: Final = "EdDSA"
"""What key sets published before the JWS said (RFC 8037, deprecated by RFC 9864): a
saved copy of one still verifies the receipts it was saved for."""
JWS_TYPE: Final = "datavault-erasure-receipt"
"""The JWS header's `typ`: a receipt, not a JWT or any other signed JSON."""

_MAX_SAFE_INTEGER: Final = 2**53 - 1

# base64url without padding (RFC 7515 §2), strict on input: crypto/jws.py.
b64url = jws.b64url
b64url_decode = jws.b64url_decode


# --- canonical form ------------------------------------------------------------------


def _is_canonical(value: Any) -> bool:
    """`_check_canonical`'s rules without naming where a fault is: no path is built for
    each value, so a long list (a shred-ledger object's 5,000 entries) is checked several
    times faster. Only when it says no does `_check_canonical` walk again to name it."""
    if value is None or isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return abs(value) <= _MAX_SAFE_INTEGER
    if isinstance(value, list):
        return all(_is_canonical(item) for item in value)
    if isinstance(value, dict):
        for key, item in value.items():
            # isascii first: the usual key; max() is the BMP test for the others.
            if not isinstance(key, str) or not (key.isascii() or max(key) <= "\uffff"):
                return False
            if not _is_canonical(item):
                return False
        return True
    return False  # floats and every other type


def _check_canonical(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if abs(value) > _MAX_SAFE_INTEGER:
            raise ValueError(f"{path}: integer outside the I-JSON range")
        return
    if isinstance(value, float):
        raise TypeError(f"{path}: floats are not allowed in receipts")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_canonical(item, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: object keys must be strings")
            if any(ord(ch) > 0xFFFF for ch in key):
                raise ValueError(f"{path}: object key outside the Basic Multilingual Plane")
            _check_canonical(item, f"{path}.{key}")
        return
    raise TypeError(f"{path}: {type(value).__name__} is not allowed in receipts")


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON of a receipt-shaped value (see the module docstring).

    TypeError for floats and non-JSON types, ValueError for integers beyond 2**53 - 1,
    non-BMP object keys and unpaired surrogates.
    """
    if not _is_canonical(value):
        _check_canonical(value, "$")  # raises, naming where
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")  # an unpaired surrogate raises UnicodeEncodeError here


# --- the receipt ---------------------------------------------------------------------


def _time(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("receipt times must be timezone-aware")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    """Receipt items as JSON values: datetimes become RFC 3339 UTC strings, UUIDs strings,
    tuples/sets lists (sets sorted); anything else is checked by canonical_json."""
    if isinstance(value, datetime):
        return _time(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, frozenset | set):
        return sorted(_plain(v) for v in value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def build_receipt(
    *,
    issuer: str,
    tenant_id: uuid.UUID | str,
    erasure_id: uuid.UUID | str,
    subject_ref_hash: str | bytes,
    requested_at: datetime,
    completed_at: datetime | None,
    final: bool,
    shredded: list[dict[str, Any]],
    held: list[dict[str, Any]],
    retained: list[dict[str, Any]],
    backups_unreadable_after: datetime | None,
    ledger: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The receipt object to sign (API.md, `GET /v1/erasures/{id}/receipt`).

    ``subject_ref_hash`` is the pseudonymous subject id, as hex (or the raw bytes).
    Items of ``shredded``/``held``/``retained`` keep the caller's order; datetimes and
    UUIDs in them are rendered as strings. A final receipt needs ``completed_at``.
    """
    if final and completed_at is None:
        raise ValueError("a final receipt needs completed_at")
    if isinstance(subject_ref_hash, bytes):
        ref_hash = subject_ref_hash.hex()
    else:
        bytes.fromhex(subject_ref_hash)  # ValueError unless hex
        ref_hash = subject_ref_hash.lower()
    receipt: dict[str, Any] = {
        "v": RECEIPT_VERSION,
        "type": RECEIPT_TYPE,
        "issuer": issuer,
        "tenant_id": str(tenant_id),
        "erasure_id": str(erasure_id),
        "subject_ref_hash": ref_hash,
        "requested_at": _time(requested_at),
        "completed_at": None if completed_at is None else _time(completed_at),
        "final": bool(final),
        "shredded": _plain(shredded),
        "held": _plain(held),
        "retained": _plain(retained),
        "backups_unreadable_after": (
            None if backups_unreadable_after is None else _time(backups_unreadable_after)
        ),
    }
    if ledger is not None:
        # The shred ledger's last entry and its hash when the receipt was issued: a
        # restored database with the ledger's tail removed cannot show a shorter ledger
        # to the holder of this receipt.
        receipt["ledger"] = {"seq": int(ledger["seq"]), "head": str(ledger["head"])}
    canonical_json(receipt)  # refuse now what could not be signed later
    return receipt


# --- signing -------------------------------------------------------------------------


def key_id_for(public_key: bytes) -> str:
    """A short stable kid: "rk-" and the first 16 hex digits of SHA-256(public key)."""
    return "rk-" + hashlib.sha256(public_key).hexdigest()[:16]


def _wrap_context(kid: str) -> KeyContext:
    # Bound to the kid: a wrapped private key moved to another row fails to unwrap.
    return KeyContext(purpose=PURPOSE_DEPLOYMENT_SECRET, key_id=f"receipt-signing-key:{kid}")


def jws_header(kid: str) -> dict[str, str]:
    """The receipt JWS's protected header, exactly (API.md)."""
    return {"alg": SIGNATURE_ALG, "kid": kid, "typ": JWS_TYPE}


def sign_statement(
    signing_key: SecretBytes, kid: str, name: str, statement: dict[str, Any]
) -> dict[str, Any]:
    """The signed document `{<name>: statement, signature, key_id, alg}`, the signature
    over the statement's canonical JSON: what the receipt key signs besides receipts (a
    shred-ledger checkpoint). Every such statement names its `type` inside what is
    signed, so one kind never passes for another."""
    if not isinstance(statement.get("type"), str):
        raise ValueError("a signed statement names its type")
    signature = signing.sign(signing_key, canonical_json(statement))
    return {name: statement, "signature": b64url(signature), "key_id": kid,
            "alg": SIGNATURE_ALG}  # fmt: skip


def sign_receipt(signing_key: SecretBytes, kid: str, receipt: dict[str, Any]) -> dict[str, Any]:
    """The signed document `{receipt, jws, signature, key_id, alg}` (API.md): the JWS's
    payload and the detached signature are over the same canonical JSON of `receipt`;
    the header is canonical JSON too, so one receipt and key give one JWS."""
    payload = canonical_json(receipt)
    compact = jws.sign_compact(signing_key, canonical_json(jws_header(kid)), payload)
    signature = signing.sign(signing_key, payload)
    return {"receipt": receipt, "jws": compact, "signature": b64url(signature),
            "key_id": kid, "alg": SIGNATURE_ALG}  # fmt: skip


class ReceiptSigner:
    """The deployment's active receipt signing key."""

    def __init__(self, kid: str, signing_key: SecretBytes) -> None:
        self._kid = kid
        self._key = signing_key

    def __repr__(self) -> str:
        return f"ReceiptSigner(kid={self._kid!r})"

    @property
    def kid(self) -> str:
        return self._kid

    @property
    def public_key(self) -> bytes:
        return signing.public_key(self._key)

    @classmethod
    async def load_or_create(cls, db: Database, root: RootKeyProvider) -> ReceiptSigner:
        """The active key, created (and wrapped by the root key) on first start.

        Race-safe: creation runs under a transaction-scoped advisory lock, so processes
        starting together end up with one key.
        """
        async with db.untenanted_tx() as conn:
            row = await conn.fetchrow(Q.active_receipt_key)
            if row is None:
                await conn.execute(Q.lock_receipt_keys)
                row = await conn.fetchrow(Q.active_receipt_key)  # another may have won
            if row is None:
                key = signing.generate_signing_key()
                public = signing.public_key(key)
                kid = key_id_for(public)
                wrapped = await asyncio.to_thread(root.wrap, key, _wrap_context(kid))
                await conn.execute(Q.insert_receipt_key, kid, public, wrapped,
                                   root.current_epoch())  # fmt: skip
                return cls(kid, key)
        kid = row["kid"]
        key = await asyncio.to_thread(
            root.unwrap, bytes(row["private_wrapped"]), _wrap_context(kid)
        )
        public = bytes(row["public_key"])
        # The row must hold one consistent key: kid, public key and private key agree.
        if key_id_for(public) != kid or signing.public_key(key) != public:
            raise IntegrityError("receipt signing key does not match its public key")
        return cls(kid, key)

    def sign(self, receipt: dict[str, Any]) -> dict[str, Any]:
        """`{"receipt", "jws", "signature", "key_id", "alg": "Ed25519"}` (sign_receipt)."""
        return sign_receipt(self._key, self._kid, receipt)

    def sign_statement(self, name: str, statement: dict[str, Any]) -> dict[str, Any]:
        """Another statement than a receipt (a shred-ledger checkpoint), signed the same
        way and verifiable with the same published key set."""
        return sign_statement(self._key, self._kid, name, statement)


async def rewrap_receipt_keys(db: Database, root: RootKeyProvider) -> int:
    """Move every stored receipt private key to the current root epoch (for a new epoch,
    like key_rotation.rewrap_deployment_secrets). Returns how many moved."""
    moved = 0
    async with db.untenanted_tx() as conn:
        for row in await conn.fetch(Q.receipt_keys_for_update):
            if row["root_epoch"] == root.current_epoch():
                continue
            context = _wrap_context(row["kid"])
            key = await asyncio.to_thread(root.unwrap, bytes(row["private_wrapped"]), context)
            wrapped = await asyncio.to_thread(root.wrap, key, context)
            await conn.execute(Q.rewrap_receipt_key, row["kid"], wrapped, root.current_epoch())
            moved += 1
    return moved


async def receipt_keys_under_epoch(db: Database, epoch: int) -> int:
    """How many receipt private keys are still wrapped under root epoch ``epoch``."""
    async with db.untenanted_tx() as conn:
        return int(await conn.fetchval(Q.receipt_keys_under_epoch, epoch))


# --- publishing -----------------------------------------------------------------------


def jwk(kid: str, public_key: bytes) -> dict[str, str]:
    """A public key as an OKP JWK (RFC 8037) with RFC 9864's `alg`."""
    return {"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64url(public_key),
            "use": "sig", "alg": JWK_ALG}  # fmt: skip


async def published_keys(db: Database) -> dict[str, Any]:
    """Every receipt public key, retired ones included, as a JWK set (RFC 7517/8037):
    what `/.well-known/jwks.json` and `/v1/receipt-keys` serve."""
    async with db.untenanted_tx() as conn:
        rows = await conn.fetch(Q.published_receipt_keys)
    return {"keys": [jwk(row["kid"], bytes(row["public_key"])) for row in rows]}
