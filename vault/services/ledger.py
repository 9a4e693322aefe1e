"""The shred ledger: every destroyed key id, kept outside PostgreSQL in the blob store.

A shred's transaction writes outbox rows; the publisher (workers/ledger.py) turns pending
rows into one ledger object per batch, `ledger/<seq>.json`, hash-chained to the one before, and only
then marks them published (an erasure completes once all its rows are). PostgreSQL
remembers the head it last saw. On start the vault re-destroys every key the ledger
names that the database still holds (a restored backup), and refuses to start when the
ledger is shorter than that head (objects removed). `datavault ledger verify` checks
the chain.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vault.blobs.base import BlobNotFound, BlobStore
from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.services.ledger_watermark import LedgerHead, LedgerWatermark

Q = Queries("ledger")
E = Queries("erasures")

LEDGER_PREFIX = "ledger/"
_RECONCILE_CHUNK = 10_000  # key ids per re-destroy statement at start-up
GENESIS = bytes(32)
_FORMAT = "datavault.shred-ledger"


class LedgerError(Exception):
    """The ledger is broken or behind the database: the vault must not serve."""


def entry_key(seq: int) -> str:
    return f"{LEDGER_PREFIX}{seq:020d}.json"


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
    except (ValueError, KeyError, TypeError) as exc:
        raise LedgerError("a ledger object is malformed") from exc


async def read_ledger(blobs: BlobStore) -> list[LedgerObject]:
    """Every ledger object, checked: contiguous from 1 and each linked to the one before."""
    objects, prev = [], GENESIS
    for expected, key in enumerate(await blobs.list_keys(LEDGER_PREFIX), start=1):
        entry = parse_entry(await blobs.get(key))
        if key != entry_key(expected) or entry.seq != expected:
            raise LedgerError(f"ledger entry {expected} is missing")
        if entry.prev != prev:
            raise LedgerError(f"ledger entry {expected} does not link to the one before (changed)")
        objects.append(entry)
        prev = entry.hash
    return objects


async def verify_ledger(
    db: Database, blobs: BlobStore, watermark: LedgerWatermark | None = None
) -> list[LedgerObject]:
    """The ledger, checked as a chain and against the head PostgreSQL last recorded: a
    removed tail (shorter than that head) or a changed entry at the head (which no later
    entry links to yet) raise LedgerError too. The ledger may be one entry ahead of the
    head (a publisher that died between writing and recording); that is not a fault."""
    objects = await read_ledger(blobs)
    await check_watermark(blobs, watermark)
    async with db.untenanted_tx() as conn:
        head = await conn.fetchrow(Q.get_head)
    if head is None or head["seq"] == 0:
        return objects
    if head["seq"] > len(objects):
        raise LedgerError(
            f"the shred ledger ends at entry {len(objects)} but the database saw {head['seq']}: "
            "ledger objects were removed"
        )
    if objects[head["seq"] - 1].hash != bytes(head["entry_hash"]):
        raise LedgerError(
            f"ledger entry {head['seq']} differs from the one the database recorded (changed)"
        )
    return objects


async def entries_after_head(db: Database, blobs: BlobStore) -> list[LedgerObject]:
    """The ledger objects after the head this database recorded, checked: the object at
    the head must be there and be the one recorded (else the ledger was cut or changed),
    and each later one must link to the one before."""
    async with db.untenanted_tx() as conn:
        head = await conn.fetchrow(Q.get_head)
    seq = int(head["seq"]) if head is not None else 0
    prev = bytes(head["entry_hash"]) if head is not None else GENESIS
    if seq > 0:
        try:
            at_head = parse_entry(await blobs.get(entry_key(seq)))
        except BlobNotFound:
            raise LedgerError(
                f"the shred ledger has no entry {seq}, which the database saw: "
                "ledger objects were removed"
            ) from None
        if at_head.hash != prev:
            raise LedgerError(
                f"ledger entry {seq} differs from the one the database recorded (changed)"
            )
    newer: list[LedgerObject] = []
    while True:
        try:
            entry = parse_entry(await blobs.get(entry_key(seq + 1)))
        except BlobNotFound:
            # A gap with entries beyond it: one was removed (whose keys might be revived).
            if max(await blobs.list_keys(LEDGER_PREFIX), default="") > entry_key(seq):
                raise LedgerError(f"ledger entry {seq + 1} is missing") from None
            return newer
        if entry.seq != seq + 1 or entry.prev != prev:
            raise LedgerError(f"ledger entry {seq + 1} does not link to the one before (changed)")
        newer.append(entry)
        seq, prev = entry.seq, entry.hash


async def check_watermark(blobs: BlobStore, watermark: LedgerWatermark | None) -> None:
    """The ledger must reach the highest head the root-key store remembers: a restored
    old database with the ledger's newer objects removed is refused here, where the
    database's own (old) head could not tell."""
    kept = watermark.highest() if watermark is not None else None
    if kept is None:
        return
    try:
        entry = parse_entry(await blobs.get(entry_key(kept.seq)))
    except BlobNotFound:
        raise LedgerError(
            f"the shred ledger has no entry {kept.seq}, which this deployment published "
            "(the root-key store remembers it): ledger objects were removed"
        ) from None
    if entry.hash != kept.hash:
        raise LedgerError(
            f"ledger entry {kept.seq} differs from the one this deployment published (changed)"
        )


async def reconcile_on_start(
    db: Database, blobs: BlobStore, watermark: LedgerWatermark | None = None
) -> int:
    """Before serving: refuse a ledger cut or changed at the database's head; re-destroy
    every key the entries after that head name that the database still holds (a restored
    backup): subject and data keys, and a closed tenant's KEKs and HMAC key. Returns how
    many keys were re-destroyed.

    Entries up to the head need no look: each was published from this database's own
    outbox rows, which commit with the destruction they record, and the head moves only
    after publishing, so any copy of the database that holds the head holds those
    destructions too. A restored backup holds an older head and is reconciled from there;
    start-up therefore costs what was shredded since the backup, not the ledger's whole
    history. `datavault ledger verify` checks the whole chain.

    The ledger must also reach the head the root-key store remembers (`watermark`),
    which rises to the ledger's end here."""
    await check_watermark(blobs, watermark)
    objects = await entries_after_head(db, blobs)
    if objects and watermark is not None:
        await asyncio.to_thread(watermark.remember, LedgerHead(objects[-1].seq, objects[-1].hash))
    by_tenant: dict[uuid.UUID, dict[str, list[tuple[str, datetime]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    listed: dict[uuid.UUID, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for seq, entry in ((o.seq, e) for o in objects for e in o.entries):
        at = datetime.fromisoformat(entry["destroyed_at"])
        tenant_id = uuid.UUID(entry["tenant_id"])
        by_tenant[tenant_id][entry["key_kind"]].append((entry["key_id"], at))
        listed[tenant_id].append((seq, entry))
    redestroyed = 0
    for tenant_id, kinds in by_tenant.items():
        async with db.tenant_tx(tenant_id) as conn:
            for kind, keys in kinds.items():
                for start in range(0, len(keys), _RECONCILE_CHUNK):
                    chunk = keys[start : start + _RECONCILE_CHUNK]
                    redestroyed += await _redestroy(conn, tenant_id, kind, chunk)
            for start in range(0, len(listed[tenant_id]), _RECONCILE_CHUNK):
                await _record_published(
                    conn, tenant_id, listed[tenant_id][start : start + _RECONCILE_CHUNK]
                )
    return redestroyed


async def _record_published(
    conn: Connection, tenant_id: uuid.UUID, entries: list[tuple[int, dict[str, Any]]]
) -> None:
    """The database learns again that these destroyed keys are in the ledger (a restored
    backup had no outbox rows for them): `datavault check deletion` asks it."""
    await conn.execute(
        Q.record_reconciled,
        tenant_id,
        [e["key_kind"] for _, e in entries],
        [e["key_id"] for _, e in entries],
        [uuid.UUID(e["erasure_id"]) if e.get("erasure_id") else None for _, e in entries],
        [datetime.fromisoformat(e["destroyed_at"]) for _, e in entries],
        [seq for seq, _ in entries],
    )


async def _redestroy(
    conn: Connection, tenant_id: uuid.UUID, kind: str, keys: list[tuple[str, datetime]]
) -> int:
    times = [at for _, at in keys]
    if kind == "subject":
        ids = [uuid.UUID(key_id) for key_id, _ in keys]
        return int(await conn.fetchval(Q.redestroy_subject_keys, tenant_id, ids, times))
    if kind == "data":
        ids = [uuid.UUID(key_id) for key_id, _ in keys]
        return int(await conn.fetchval(Q.redestroy_data_keys, tenant_id, ids, times))
    if kind == "kek":
        versions = [int(key_id) for key_id, _ in keys]
        return _count(await conn.execute(Q.redestroy_keks, tenant_id, versions, times))
    if kind == "hmac":
        return int(await conn.fetchval(Q.redestroy_hmac_key, tenant_id, min(times)))
    raise LedgerError(f"the shred ledger names an unknown key kind {kind!r}")


def _count(status: str) -> int:
    """Rows an UPDATE changed, from its command tag ("UPDATE 3")."""
    return int(status.rsplit(" ", 1)[-1])
