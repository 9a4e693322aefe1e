"""The shred ledger's objects: `ledger/<seq>.json`, one per published batch of destroyed
keys, each naming the SHA-256 of the one before (`prev`), the first naming 32 zero bytes.
The checks that read them are in vault/services/ledger.py; folded objects are replaced
by signed checkpoints (vault/services/ledger_checkpoint.py).

Every object is signed with the deployment's receipt key, the way a checkpoint is
(`sign_statement`: a detached Ed25519 signature over the statement's canonical JSON,
naming the key by kid, so objects signed by a retired receipt key still verify against
the published key set). Object Lock stops deleting or replacing an object, not appending
one: without the signature anyone able to write the bucket could append well-formed,
correctly chained entries, and start-up would apply them. Objects written before ledger
signing carry no signature; `SignedWindow` accepts them only before the chain's first
signed object, which start-up writes at once after the upgrade (workers/ledger.py)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from vault.blobs.base import BlobNotFound, BlobStore
from vault.services.receipt_verify import (
    ReceiptInvalid,
    load_receipt_json,
    verify_signed_statement,
)
from vault.services.receipts import ReceiptSigner

LEDGER_PREFIX = "ledger/"
GENESIS = bytes(32)
# Objects written before ledger signing: `{"format", "v": 1, seq, prev, entries}`.
_UNSIGNED_FORMAT = "datavault.shred-ledger"
# Signed objects: `{"ledger_entry": {"type", "v", seq, prev, entries}, signature, key_id,
# alg}`; the `type` keeps one from passing for a receipt or a checkpoint, and back.
ENTRY_TYPE = "datavault.shred-ledger-entry"
ENTRY_VERSION = 1
_NAME = "ledger_entry"  # the signed statement's field in the stored document
_DIGITS = 20
# Objects fetched at once while walking the ledger: a walk over S3 waits on one round
# trip per window, not per object, and holds at most this many objects in memory.
READ_AHEAD = 32


class LedgerError(Exception):
    """The ledger is broken or behind the database: the vault must not serve."""


def entry_key(seq: int) -> str:
    return f"{LEDGER_PREFIX}{seq:0{_DIGITS}d}.json"


def entry_seq(key: str) -> int | None:
    """The sequence number a ledger key names, or None for any other key."""
    stem = key.removeprefix(LEDGER_PREFIX).removesuffix(".json")
    if len(stem) != _DIGITS or not stem.isdigit() or key != entry_key(int(stem)):
        return None
    return int(stem)


def encode_entry(
    seq: int, prev: bytes, entries: list[dict[str, Any]], signer: ReceiptSigner
) -> tuple[bytes, bytes]:
    """The stored bytes of ledger object `seq` (signed) and their SHA-256, which the next
    object names as its `prev`: the chain covers the signatures too."""
    statement = {"type": ENTRY_TYPE, "v": ENTRY_VERSION, "seq": seq, "prev": prev.hex(),
                 "entries": entries}  # fmt: skip
    document = signer.sign_statement(_NAME, statement)
    data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return data, hashlib.sha256(data).digest()


@dataclass(frozen=True)
class LedgerObject:
    seq: int
    prev: bytes
    entries: list[dict[str, Any]]
    hash: bytes
    key_id: str | None = None  # the receipt key that signed it; None: written unsigned


def parse_entry(data: bytes, jwks: Any, where: int) -> LedgerObject:
    """Ledger object `where` (the seq its key names), checked: a signed object must
    verify under a key of `jwks` (the deployment's receipt keys, retired ones included);
    an unsigned one is returned as such, for `SignedWindow` to judge. LedgerError naming
    `where` otherwise."""
    try:
        document = load_receipt_json(data)
    except (ValueError, ReceiptInvalid) as exc:
        raise LedgerError(f"ledger entry {where} is malformed") from exc
    if isinstance(document, dict) and _NAME in document:
        try:
            statement = verify_signed_statement(document, jwks, _NAME)
        except ReceiptInvalid as exc:
            # The reason names a kid at most: public, and what an operator looks for.
            raise LedgerError(
                f"ledger entry {where} does not verify ({exc}): forged or changed"
            ) from None
        if statement.get("type") != ENTRY_TYPE or statement.get("v") != ENTRY_VERSION:
            raise LedgerError(f"ledger entry {where} is malformed")
        return _object(statement, data, str(document["key_id"]), where)
    if not isinstance(document, dict) or document.get("format") != _UNSIGNED_FORMAT:
        raise LedgerError(f"ledger entry {where} is malformed")
    return _object(document, data, None, where)


def _object(fields: dict[str, Any], data: bytes, key_id: str | None, where: int) -> LedgerObject:
    try:
        entries = fields["entries"]
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise TypeError("entries are a list of objects")
        return LedgerObject(
            int(fields["seq"]), bytes.fromhex(fields["prev"]), entries,
            hashlib.sha256(data).digest(), key_id,
        )  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LedgerError(f"ledger entry {where} is malformed") from exc


@dataclass
class SignedWindow:
    """Where unsigned objects are still accepted: before the chain's first signed object.
    `signed_from` starts as what the database recorded (None when it knows of no signed
    object: a database from before the upgrade, whose head is then before the first
    signed object too) and moves to the first signed object a walk meets. An unsigned
    object at or after it was appended by someone without the receipt key."""

    signed_from: int | None

    def admit(self, entry: LedgerObject) -> None:
        if entry.key_id is not None:
            if self.signed_from is None or entry.seq < self.signed_from:
                self.signed_from = entry.seq
            return
        if self.signed_from is not None and entry.seq >= self.signed_from:
            raise LedgerError(
                f"ledger entry {entry.seq} is not signed, but the ledger is signed from "
                f"entry {self.signed_from} on: appended without the receipt key (forged)"
            )


async def _get_or_none(blobs: BlobStore, key: str) -> bytes | None:
    try:
        return await blobs.get(key)
    except BlobNotFound:
        return None


async def fetch_in_order(
    blobs: BlobStore, keys: list[str]
) -> AsyncIterator[tuple[str, bytes | None]]:
    """Each key's object, in the order given, READ_AHEAD at a time; None for one that
    was listed but is gone (removed meanwhile, by compaction or by someone else)."""
    for start in range(0, len(keys), READ_AHEAD):
        window = keys[start : start + READ_AHEAD]
        found = await asyncio.gather(*(_get_or_none(blobs, k) for k in window))
        for key, data in zip(window, found, strict=True):
            yield key, data
