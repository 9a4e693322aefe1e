"""The shred ledger's objects: `ledger/<seq>.json`, one per published batch of destroyed
keys, each naming the SHA-256 of the one before (`prev`), the first naming 32 zero bytes.
The checks that read them are in vault/services/ledger.py; folded objects are replaced
by signed checkpoints (vault/services/ledger_checkpoint.py)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from vault.blobs.base import BlobNotFound, BlobStore

LEDGER_PREFIX = "ledger/"
GENESIS = bytes(32)
_FORMAT = "datavault.shred-ledger"
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


def encode_entry(seq: int, prev: bytes, entries: list[dict[str, Any]]) -> tuple[bytes, bytes]:
    document = {"format": _FORMAT, "v": 1, "seq": seq, "prev": prev.hex(), "entries": entries}
    data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return data, hashlib.sha256(data).digest()


@dataclass(frozen=True)
class LedgerObject:
    seq: int
    prev: bytes
    entries: list[dict[str, Any]]
    hash: bytes


def parse_entry(data: bytes) -> LedgerObject:
    try:
        document = json.loads(data)
        if document.get("format") != _FORMAT:
            raise ValueError("not a ledger entry")
        return LedgerObject(
            int(document["seq"]), bytes.fromhex(document["prev"]), list(document["entries"]),
            hashlib.sha256(data).digest(),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LedgerError("a ledger object is malformed") from exc


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
