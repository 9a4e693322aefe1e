"""The shred ledger: every destroyed key id, kept outside PostgreSQL in the blob store.

A shred's transaction writes outbox rows; the publisher turns pending rows into one
ledger object per batch, `ledger/<seq>.json`, hash-chained to the one before, and only
then marks them published (an erasure completes once all its rows are). PostgreSQL
remembers the head it last saw. On start the vault re-destroys every key the ledger
names that the database still holds (a restored backup), and refuses to start when the
ledger is shorter than that head (objects removed). `datavault ledger verify` checks
the chain.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from vault.blobs.base import BlobNotFound, BlobStore
from vault.config import Settings
from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.observability import events
from vault.services.erasure_receipts import ReceiptIssuer
from vault.services.tenants import list_tenants

Q = Queries("ledger")
E = Queries("erasures")

LEDGER_PREFIX = "ledger/"
PUBLISH_INTERVAL_SECONDS = 2.0
# Object Lock on ledger entries lasts the backup retention (the erasure's receipts and
# the caller pass the deployment's); this default is Settings' default.
DEFAULT_RETAIN_DAYS = Settings().backup_retention_days
_BATCH = 5000  # outbox rows per tenant per ledger object (~1 MB)
_MAX_OBJECTS_PER_ROUND = 20
_RECONCILE_CHUNK = 10_000  # key ids per re-destroy statement at start-up
_GENESIS = bytes(32)
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
    objects, prev = [], _GENESIS
    for expected, key in enumerate(await blobs.list_keys(LEDGER_PREFIX), start=1):
        entry = parse_entry(await blobs.get(key))
        if key != entry_key(expected) or entry.seq != expected:
            raise LedgerError(f"ledger entry {expected} is missing")
        if entry.prev != prev:
            raise LedgerError(f"ledger entry {expected} does not link to the one before (changed)")
        objects.append(entry)
        prev = entry.hash
    return objects


async def publish_pending(
    db: Database, blobs: BlobStore, retain_days: int = DEFAULT_RETAIN_DAYS
) -> int:
    """Publish pending outbox rows as one ledger object; return how many rows.

    Where the bucket has Object Lock, the object is locked (compliance mode) for
    `retain_days`, the deployment's backup retention: as long as a backup from before an
    erasure can be restored, nobody, the operator included, can delete the entry that
    makes the restored vault destroy the key again."""
    async with db.untenanted_tx() as head_tx:
        await head_tx.execute(Q.ensure_head, _GENESIS)
        head = await head_tx.fetchrow(Q.lock_head)  # one publisher at a time
        assert head is not None
        seq, prev = int(head["seq"]), bytes(head["entry_hash"])
        # A publisher that died after writing its object but before recording it.
        while True:
            try:
                orphan = parse_entry(await blobs.get(entry_key(seq + 1)))
            except BlobNotFound:
                break
            if orphan.prev != prev:
                raise LedgerError(f"ledger entry {seq + 1} does not link to the head")
            await _mark(db, orphan.seq, orphan.entries)
            seq, prev = orphan.seq, orphan.hash
        entries: list[dict[str, Any]] = []
        for tenant in await list_tenants(db):
            async with db.tenant_tx(tenant.id) as conn:
                for row in await conn.fetch(Q.pending, tenant.id, _BATCH):
                    entries.append(_entry(tenant.id, row))
        if entries:
            seq += 1
            data, prev = encode_entry(seq, prev, entries)
            until = datetime.now(UTC) + timedelta(days=retain_days + 1)
            await blobs.put_retained(entry_key(seq), data, until)
            await _mark(db, seq, entries)
        await head_tx.execute(Q.update_head, seq, prev)
    for entry in entries:
        erasure_id = entry["erasure_id"]
        events.key_shredded(
            uuid.UUID(entry["tenant_id"]), entry["key_kind"], entry["key_id"],
            uuid.UUID(erasure_id) if erasure_id else None, seq,
        )  # fmt: skip
    return len(entries)


def _entry(tenant_id: uuid.UUID, row: Any) -> dict[str, Any]:
    destroyed_at: datetime = row["destroyed_at"]
    return {
        "tenant_id": str(tenant_id),
        "outbox_id": row["id"],
        "key_kind": row["key_kind"],
        "key_id": row["key_id"],
        "erasure_id": str(row["erasure_id"]) if row["erasure_id"] else None,
        "destroyed_at": destroyed_at.isoformat(),
    }


async def _mark(db: Database, seq: int, entries: list[dict[str, Any]]) -> None:
    by_tenant: dict[str, list[int]] = defaultdict(list)
    for entry in entries:
        by_tenant[entry["tenant_id"]].append(int(entry["outbox_id"]))
    for tenant_id, ids in by_tenant.items():
        async with db.tenant_tx(uuid.UUID(tenant_id)) as conn:
            await conn.execute(Q.mark_published, uuid.UUID(tenant_id), ids, seq)


async def verify_ledger(db: Database, blobs: BlobStore) -> list[LedgerObject]:
    """The ledger, checked as a chain and against the head PostgreSQL last recorded: a
    removed tail (shorter than that head) or a changed entry at the head (which no later
    entry links to yet) raise LedgerError too. The ledger may be one entry ahead of the
    head (a publisher that died between writing and recording); that is not a fault."""
    objects = await read_ledger(blobs)
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
    prev = bytes(head["entry_hash"]) if head is not None else _GENESIS
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


async def reconcile_on_start(db: Database, blobs: BlobStore) -> int:
    """Before serving: refuse a ledger cut or changed at the database's head; re-destroy
    every key the entries after that head name that the database still holds (a restored
    backup): subject and data keys, and a closed tenant's KEKs and HMAC key. Returns how
    many keys were re-destroyed.

    Entries up to the head need no look: each was published from this database's own
    outbox rows, which commit with the destruction they record, and the head moves only
    after publishing, so any copy of the database that holds the head holds those
    destructions too. A restored backup holds an older head and is reconciled from there;
    start-up therefore costs what was shredded since the backup, not the ledger's whole
    history. `datavault ledger verify` checks the whole chain."""
    objects = await entries_after_head(db, blobs)
    by_tenant: dict[uuid.UUID, dict[str, list[tuple[str, datetime]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for entry in (e for o in objects for e in o.entries):
        at = datetime.fromisoformat(entry["destroyed_at"])
        by_tenant[uuid.UUID(entry["tenant_id"])][entry["key_kind"]].append((entry["key_id"], at))
    redestroyed = 0
    for tenant_id, kinds in by_tenant.items():
        async with db.tenant_tx(tenant_id) as conn:
            for kind, keys in kinds.items():
                for start in range(0, len(keys), _RECONCILE_CHUNK):
                    chunk = keys[start : start + _RECONCILE_CHUNK]
                    redestroyed += await _redestroy(conn, tenant_id, kind, chunk)
    return redestroyed


async def _redestroy(
    conn: Connection, tenant_id: uuid.UUID, kind: str, keys: list[tuple[str, datetime]]
) -> int:
    times = [at for _, at in keys]
    if kind == "subject":
        ids = [uuid.UUID(key_id) for key_id, _ in keys]
        return int(await conn.fetchval(Q.redestroy_subject_keys, tenant_id, ids, times))
    if kind == "data":
        ids = [uuid.UUID(key_id) for key_id, _ in keys]
        return _count(await conn.execute(Q.redestroy_data_keys, tenant_id, ids, times))
    if kind == "kek":
        versions = [int(key_id) for key_id, _ in keys]
        return _count(await conn.execute(Q.redestroy_keks, tenant_id, versions, times))
    if kind == "hmac":
        return int(await conn.fetchval(Q.redestroy_hmac_key, tenant_id, min(times)))
    raise LedgerError(f"the shred ledger names an unknown key kind {kind!r}")


def _count(status: str) -> int:
    """Rows an UPDATE changed, from its command tag ("UPDATE 3")."""
    return int(status.rsplit(" ", 1)[-1])


async def complete_published_erasures(
    db: Database, receipts: ReceiptIssuer | None = None
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Erasures whose every ledger row is published become completed (or held, when
    holds keep part of them), with their receipt (final, or interim while held) issued
    in the same transaction. Returns (tenant, erasure) pairs that changed."""
    changed = []
    for tenant in await list_tenants(db):
        done: list[tuple[uuid.UUID, bool]] = []
        async with db.tenant_tx(tenant.id) as conn:
            for row in await conn.fetch(E.awaiting_ledger, tenant.id):
                status = "held" if row["kept"] else "completed"
                await conn.execute(E.set_status, tenant.id, row["id"], status)
                await conn.execute(E.event, tenant.id, row["id"], "in_progress", status, None, None)
                if receipts is not None:
                    await receipts.issue(conn, tenant.id, row["id"])
                changed.append((tenant.id, row["id"]))
                done.append((row["id"], bool(row["kept"])))
        for erasure_id, held in done:
            events.erasure_completed(tenant.id, erasure_id, held=held)
    return changed


async def publish_and_complete(db: Database, blobs: BlobStore, receipts: ReceiptIssuer) -> None:
    # Replaced records add a data key each: under a burst a tenant can have more pending
    # rows than one object takes, and an erasure's rows must not wait rounds behind them.
    for _ in range(_MAX_OBJECTS_PER_ROUND):
        if await publish_pending(db, blobs, receipts.backup_retention_days) < _BATCH:
            break
    await complete_published_erasures(db, receipts)
