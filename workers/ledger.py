"""The shred-ledger publisher: pending outbox rows become one ledger object per batch in
the blob store (`ledger/<seq>.json`, hash-chained to the one before), then are marked
published, and erasures whose every row is published complete (or are held, when holds
or retention keep part of them) with their receipt. Every object is signed with the
receipt key; while the chain has no signed object yet (the first run after ledger signing
came, or an empty ledger) one is written at once, with no entries if none are pending:
the marker that ends the window in which unsigned objects are accepted. The format and
the checks are in vault/services/ledger_objects.py and vault/services/ledger.py."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from vault.blobs.base import BlobNotFound, BlobStore
from vault.config import Settings
from vault.db.database import Database
from vault.db.sql import Queries
from vault.domain.erasures import ErasureStatus, status_after_shred
from vault.observability import events
from vault.services.erasure_receipts import ReceiptIssuer
from vault.services.erasure_transitions import transition_many
from vault.services.ledger import GENESIS, LedgerError, encode_entry, entry_key, parse_entry
from vault.services.ledger_objects import SignedWindow
from vault.services.ledger_watermark import LedgerHead, LedgerWatermark
from vault.services.receipts import ReceiptSigner, published_keys
from vault.services.tenants import list_tenants

log = structlog.get_logger("datavault.ledger")

Q = Queries("ledger")
E = Queries("erasures")

PUBLISH_INTERVAL_SECONDS = 2.0
# Object Lock on ledger entries lasts the backup retention (the erasure's receipts and
# the caller pass the deployment's); this default is Settings' default.
DEFAULT_RETAIN_DAYS = Settings().backup_retention_days
_BATCH = 5000  # outbox rows per tenant per ledger object (~1 MB)
_MAX_OBJECTS_PER_ROUND = 20
# Erasures completed per transaction, and transactions of one tenant at once.
_COMPLETE_BATCH = 100
_COMPLETE_PARALLEL = 4


async def publish_pending(
    db: Database, blobs: BlobStore, retain_days: int = DEFAULT_RETAIN_DAYS,
    watermark: LedgerWatermark | None = None, *, signer: ReceiptSigner,
) -> int:  # fmt: skip
    """Publish pending outbox rows as one ledger object, signed by `signer` (the receipt
    key); return how many rows. Start-up calls it once before serving: a chain without
    a signed object gets its marker then.

    Where the bucket has Object Lock, the object is locked (compliance mode) for
    `retain_days`, the deployment's backup retention: as long as a backup from before an
    erasure can be restored, nobody, the operator included, can delete the entry that
    makes the restored vault destroy the key again."""
    async with db.untenanted_tx() as head_tx:
        await head_tx.execute(Q.ensure_head, GENESIS)
        head = await head_tx.fetchrow(Q.lock_head)  # one publisher at a time
        assert head is not None
        seq, prev = int(head["seq"]), bytes(head["entry_hash"])
        window = SignedWindow(head["signed_from"])
        jwks: dict[str, Any] | None = None
        # A publisher that died after writing its object but before recording it (or
        # objects a restored backup's head is behind). Adopted only if signed, or from
        # before the first signed object: marking rows published on an appended object's
        # word would complete erasures whose keys no genuine entry names.
        while True:
            try:
                data = await blobs.get(entry_key(seq + 1))
            except BlobNotFound:
                break
            jwks = jwks if jwks is not None else await published_keys(db)
            orphan = parse_entry(data, jwks, seq + 1)
            window.admit(orphan)
            if orphan.seq != seq + 1 or orphan.prev != prev:
                raise LedgerError(f"ledger entry {seq + 1} does not link to the head")
            await _mark(db, orphan.seq, orphan.entries)
            seq, prev = orphan.seq, orphan.hash
        entries: list[dict[str, Any]] = []
        for pending in await head_tx.fetch(Q.pending_tenants):
            async with db.tenant_tx(pending["id"]) as conn:
                for row in await conn.fetch(Q.pending, pending["id"], _BATCH):
                    entries.append(_entry(pending["id"], row))
        if entries or window.signed_from is None:
            seq += 1
            data, prev = encode_entry(seq, prev, entries, signer)
            until = datetime.now(UTC) + timedelta(days=retain_days + 1)
            await blobs.put_retained(entry_key(seq), data, until)
            await _mark(db, seq, entries)
            if window.signed_from is None:
                window.signed_from = seq
                log.info("ledger_signing_began", seq=seq)
        await head_tx.execute(Q.update_head, seq, prev)
        if window.signed_from is not None and head["signed_from"] is None:
            await head_tx.execute(Q.record_signed_from, window.signed_from)
    if watermark is not None and seq:
        # Committed: the root-key store now remembers that the ledger reaches here.
        await asyncio.to_thread(watermark.remember, LedgerHead(seq, prev))
    for entry in (e for e in entries if "fact" not in e):
        erasure_id = entry["erasure_id"]
        events.key_shredded(
            uuid.UUID(entry["tenant_id"]), entry["key_kind"], entry["key_id"],
            uuid.UUID(erasure_id) if erasure_id else None, seq,
        )  # fmt: skip
    return len(entries)


def _entry(tenant_id: uuid.UUID, row: Any) -> dict[str, Any]:
    destroyed_at: datetime = row["destroyed_at"]
    entry = {
        "tenant_id": str(tenant_id),
        "outbox_id": row["id"],
        "key_kind": row["key_kind"],
        "key_id": row["key_id"],
        "erasure_id": str(row["erasure_id"]) if row["erasure_id"] else None,
        "destroyed_at": destroyed_at.isoformat(),
    }
    if row["fact"] is not None:  # an instruction entry (vault/services/ledger_instructions.py)
        entry["fact"] = json.loads(row["fact"])
    return entry


async def _mark(db: Database, seq: int, entries: list[dict[str, Any]]) -> None:
    by_tenant: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        by_tenant[entry["tenant_id"]].append(entry)
    for tenant_id, listed in by_tenant.items():
        async with db.tenant_tx(uuid.UUID(tenant_id)) as conn:
            await conn.execute(
                Q.mark_published, uuid.UUID(tenant_id),
                [int(e["outbox_id"]) for e in listed], [e["key_id"] for e in listed], seq,
            )  # fmt: skip


async def complete_published_erasures(
    db: Database, receipts: ReceiptIssuer | None = None
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Erasures whose every ledger row is published become completed (or held, when
    holds keep part of them), with their receipt (final, or interim while held) issued
    in the same transaction. Returns (tenant, erasure) pairs that changed. A tenant's
    are taken _COMPLETE_BATCH per transaction, _COMPLETE_PARALLEL transactions at once
    (SKIP LOCKED gives each its own): a burst of erasures is round trips, which overlap.

    Per tenant, what may complete is looked for first and only then the barrier taken
    (migration 0042: every hold in flight commits before completion looks for holds):
    those erasures' shreds committed before the look, so before the barrier, and a hold
    that reads after the barrier finds their keys destroyed. One shredded and published
    after the look (an inline publish, another process's publisher) waits for the next
    pass. A tenant with nothing to complete gets no barrier for its holds to queue at."""
    changed: list[tuple[uuid.UUID, uuid.UUID]] = []
    for tenant in await list_tenants(db):
        async with db.tenant_tx(tenant.id) as conn:
            ready = [
                (row["id"], row["ledger_rows"])
                for row in await conn.fetch(E.ready_before_barrier, tenant.id)
            ]
        if not ready:
            continue
        await db.tenant_fetch(tenant.id, E.transfer_barrier)
        # Each looked-at erasure in one batch only: shared by the tasks, taken in turn.
        slices = iter(
            [ready[i : i + _COMPLETE_BATCH] for i in range(0, len(ready), _COMPLETE_BATCH)]
        )

        async def complete_batches(
            tenant_id: uuid.UUID = tenant.id, slices: Iterator[list[tuple[uuid.UUID, int]]] = slices
        ) -> None:
            for looked in slices:
                batch = await _complete_batch(db, receipts, tenant_id, looked)
                changed.extend((tenant_id, erasure_id) for erasure_id in batch)

        await asyncio.gather(*(complete_batches() for _ in range(_COMPLETE_PARALLEL)))
    return changed


async def _complete_batch(
    db: Database,
    receipts: ReceiptIssuer | None,
    tenant_id: uuid.UUID,
    looked: list[tuple[uuid.UUID, int]],
) -> list[uuid.UUID]:
    """Those of `looked` (erasures found before the barrier, with their ledger rows then)
    that no hold keeps waiting and that gained no ledger row since, moved on, in one
    transaction whose look comes after the barrier."""
    done: list[tuple[uuid.UUID, ErasureStatus]] = []
    async with db.tenant_tx(tenant_id) as conn:
        rows = await conn.fetch(
            E.awaiting_ledger, tenant_id, _COMPLETE_BATCH,
            [erasure_id for erasure_id, _ in looked], [count for _, count in looked],
        )  # fmt: skip
        for row in rows:
            done.append((row["id"], status_after_shred(row["kept"])))
        for status in sorted({status for _, status in done}):  # one statement a status
            moving = [erasure_id for erasure_id, to in done if to == status]
            await transition_many(conn, tenant_id, moving, ErasureStatus.IN_PROGRESS, status)
        if receipts is not None:
            await receipts.issue_many(conn, tenant_id, [erasure_id for erasure_id, _ in done])
    for erasure_id, status in done:  # logged once committed
        events.erasure_completed(tenant_id, erasure_id, held=status == ErasureStatus.HELD)
    return [erasure_id for erasure_id, _ in done]


async def publish_and_complete(
    db: Database, blobs: BlobStore, receipts: ReceiptIssuer,
    watermark: LedgerWatermark | None = None,
) -> None:  # fmt: skip
    # Replaced records add a data key each: under a burst a tenant can have more pending
    # rows than one object takes, and an erasure's rows must not wait rounds behind them.
    for _ in range(_MAX_OBJECTS_PER_ROUND):
        published = await publish_pending(
            db, blobs, receipts.backup_retention_days, watermark, signer=receipts.signer
        )
        if published < _BATCH:
            break
    await complete_published_erasures(db, receipts)
