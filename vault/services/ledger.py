"""The shred ledger: every destroyed key id, kept outside PostgreSQL in the blob store.

A shred's transaction writes outbox rows; the publisher (workers/ledger.py) turns pending
rows into one ledger object per batch, `ledger/<seq>.json`, hash-chained to the one before
(vault/services/ledger_objects.py), and only then marks them published (an erasure
completes once all its rows are). PostgreSQL remembers the head it last saw. On start the
vault re-destroys every key the ledger names that the database still holds (a restored
backup), and refuses to start when the ledger is shorter than that head (objects
removed). Instruction entries in the same chain (an erasure's first shred, each change
to a hold) let it restore what such a backup forgot besides keys
(vault/services/ledger_instructions.py). Objects no restorable backup can need any more
fold into signed checkpoints (vault/services/ledger_checkpoint.py); a database older than
the newest checkpoint is refused. `datavault ledger verify` checks the chain and the
checkpoints.

Every object is signed with the receipt key (vault/services/ledger_objects.py): each
reader here checks the signature of every object it reads against the published receipt
keys, and refuses an unsigned object at or after the chain's first signed one
(`SignedWindow`), so write access to the bucket alone can no longer add entries that
start-up would apply.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vault.blobs.base import BlobNotFound, BlobStore
from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.services.keyring import KeyRing
from vault.services.ledger_checkpoint import (
    CHECKPOINT_PREFIX,
    Checkpoint,
    Folded,
    newest_checkpoint_at_or_after,
    read_checkpoints,
)
from vault.services.ledger_controls import replay_controls
from vault.services.ledger_instructions import is_instruction, replay
from vault.services.ledger_objects import (
    GENESIS,
    LEDGER_PREFIX,
    LedgerError,
    LedgerObject,
    SignedWindow,
    encode_entry,
    entry_key,
    entry_seq,
    fetch_in_order,
    parse_entry,
)
from vault.services.ledger_standing import replay_standing
from vault.services.ledger_watermark import LedgerHead, LedgerWatermark
from vault.services.receipts import published_keys
from workers.closure import finish_restored_closure
from workers.erasure import shred_restored

__all__ = [
    "GENESIS",
    "LEDGER_PREFIX",
    "LedgerError",
    "LedgerObject",
    "LedgerSummary",
    "encode_entry",
    "entry_key",
    "locate_head",
    "parse_entry",
    "reconcile_on_start",
    "verify_ledger",
]

Q = Queries("ledger")

_RECONCILE_CHUNK = 10_000  # key ids per re-destroy statement at start-up


@dataclass(frozen=True)
class LedgerSummary:
    objects: int  # ledger objects after the newest checkpoint
    entries: int  # destroyed keys they name
    checkpoints: int
    folded_through: int  # the last object the checkpoints fold (0: none)
    folded_entries: int  # destroyed keys the checkpoints fold
    newest_checkpoint: Checkpoint | None = None
    signed_from: int | None = None  # the chain's first signed object (None: none yet)


def database_older_than_checkpoint(seq: int, through: int, epoch: int) -> LedgerError:
    return LedgerError(
        f"the database's ledger head ({seq}) is older than the shred ledger's checkpoint "
        f"through entry {through}: it is a backup from before root-key epoch {epoch} "
        "began, and every older epoch is retired, so nothing in it can be opened; "
        "restore a newer backup"
    )


async def verify_ledger(
    db: Database,
    blobs: BlobStore,
    watermark: LedgerWatermark | None = None,
    visit: Callable[[LedgerObject], None] | None = None,
) -> LedgerSummary:
    """The whole ledger, checked: the checkpoints (signed, chained, each keeping to its
    fold rule and to the head recorded when the epoch it names began); the objects after
    them (contiguous, each linked to the one before, the first to the newest checkpoint's
    head); objects a checkpoint folds that compaction has not removed yet (each must be the
    object it folded); the head PostgreSQL recorded (a removed tail, a changed entry at the
    head, which no later entry links to yet, or a database older than a checkpoint raise
    LedgerError) and the watermark. The ledger may be one entry ahead of the head (a
    publisher that died between writing and recording); that is not a fault. Every object
    read must verify under a receipt key if signed, and be signed from the chain's first
    signed object on (LedgerError naming the first that is not). `visit` sees each object
    after the checkpoints, in order (compaction collects what it folds)."""
    checkpoints_before = await blobs.list_keys(CHECKPOINT_PREFIX)
    try:
        return await _verify_once(db, blobs, watermark, visit)
    except LedgerError:
        # A compaction that wrote a checkpoint and removed what it folds while this walk
        # ran looks like removed objects: walk once more, against the new checkpoint.
        # (The compaction's own walk, the one with `visit`, holds the compaction lock.)
        if visit is not None or await blobs.list_keys(CHECKPOINT_PREFIX) == checkpoints_before:
            raise
    return await _verify_once(db, blobs, watermark, visit)


async def _verify_once(
    db: Database,
    blobs: BlobStore,
    watermark: LedgerWatermark | None,
    visit: Callable[[LedgerObject], None] | None,
) -> LedgerSummary:
    async with db.untenanted_tx() as conn:
        head = await conn.fetchrow(Q.get_head)
        epoch_starts = {
            r["epoch"]: r["ledger_seq_at_start"] for r in await conn.fetch(Q.epoch_starts)
        }
    head_seq = int(head["seq"]) if head is not None else 0
    head_hash = bytes(head["entry_hash"]) if head is not None else GENESIS
    window = SignedWindow(head["signed_from"] if head is not None else None)
    # Listed before the checkpoints are read: a compaction running meanwhile can then
    # only remove objects its new checkpoint folds, never leave a gap this walk sees.
    keys = await blobs.list_keys(LEDGER_PREFIX)
    jwks = await published_keys(db)
    folded = Folded(await read_checkpoints(blobs, jwks))
    _check_against_epochs(folded, epoch_starts)
    objects = entries = 0
    prev, expected, at_head = folded.head, folded.through_seq + 1, None
    async for key, data in fetch_in_order(blobs, keys):
        seq = entry_seq(key)
        if seq is not None and seq <= folded.through_seq:
            # Folded but not removed yet (a compaction stopped half way): it must be the
            # object the checkpoint folded.
            # (Its bytes against the signed checkpoint's hash: that settles it, signed
            # object or not.)
            if data is not None and folded.hash_at(seq) != hashlib.sha256(data).digest():
                raise LedgerError(
                    f"ledger entry {seq} differs from the one a checkpoint folded (changed)"
                )
            continue
        if seq != expected or data is None:
            raise LedgerError(f"ledger entry {expected} is missing")
        entry = parse_entry(data, jwks, expected)
        if entry.seq != expected:
            raise LedgerError(f"ledger entry {expected} is missing")
        if entry.prev != prev:
            raise LedgerError(f"ledger entry {expected} does not link to the one before (changed)")
        window.admit(entry)
        if visit is not None:
            visit(entry)
        objects += 1
        entries += sum(1 for e in entry.entries if not is_instruction(e))
        if seq == head_seq:
            at_head = entry.hash
        prev, expected = entry.hash, expected + 1
    await check_watermark(db, blobs, watermark)
    last = expected - 1
    if head_seq > last:
        raise LedgerError(
            f"the shred ledger ends at entry {last} but the database saw {head_seq}: "
            "ledger objects were removed"
        )
    if head_seq < folded.through_seq:
        raise database_older_than_checkpoint(
            head_seq, folded.through_seq, folded.checkpoints[-1].rule_epoch
        )
    recorded = folded.head if head_seq == folded.through_seq else at_head
    if head_seq > 0 and recorded != head_hash:
        raise LedgerError(
            f"ledger entry {head_seq} differs from the one the database recorded (changed)"
        )
    newest = folded.checkpoints[-1] if folded.checkpoints else None
    return LedgerSummary(
        objects, entries, len(folded.checkpoints), folded.through_seq, folded.entries, newest,
        window.signed_from,
    )  # fmt: skip


def _check_against_epochs(folded: Folded, epoch_starts: dict[int, int | None]) -> None:
    """No checkpoint folds past the ledger head recorded when the epoch it names began:
    what a restored backup from that epoch could still need. (Whether the older epochs
    were retired is the checkpoint's own statement; a restored database may not know of
    the retirement yet.)"""
    for checkpoint in folded.checkpoints:
        started_at_seq = epoch_starts.get(checkpoint.rule_epoch)
        if started_at_seq is not None and checkpoint.through_seq > started_at_seq:
            raise LedgerError(
                f"ledger checkpoint {checkpoint.through_seq} folds entries past the ledger head "
                f"when epoch {checkpoint.rule_epoch} began ({started_at_seq}): entries a "
                "restored backup may still need"
            )


async def entries_after_head(db: Database, blobs: BlobStore) -> list[LedgerObject]:
    """The ledger objects after the head this database recorded, checked: the object at
    the head must be there and be the one recorded (else the ledger was cut or changed),
    or be the one the newest checkpoint ends with; each later one must link to the one
    before, verify under a receipt key if signed, and be signed if the chain's first
    signed object (as the database recorded it, or as met here) is not after it. A
    database older than the newest checkpoint is refused: the entries it would need are
    folded, and nothing in it can be opened any more."""
    async with db.untenanted_tx() as conn:
        head = await conn.fetchrow(Q.get_head)
    seq = int(head["seq"]) if head is not None else 0
    prev = bytes(head["entry_hash"]) if head is not None else GENESIS
    window = SignedWindow(head["signed_from"] if head is not None else None)
    jwks = await published_keys(db)

    async def keys() -> dict[str, Any]:
        return jwks

    checkpoint = await newest_checkpoint_at_or_after(blobs, keys, seq)
    if checkpoint is not None and checkpoint.through_seq > seq:
        raise database_older_than_checkpoint(seq, checkpoint.through_seq, checkpoint.rule_epoch)
    if checkpoint is not None and checkpoint.through_head != prev:
        raise LedgerError(
            f"ledger entry {seq} differs from the one the database recorded (changed)"
        )
    if seq > 0 and checkpoint is None:
        try:
            at_head = parse_entry(await blobs.get(entry_key(seq)), jwks, seq)
        except BlobNotFound:
            raise LedgerError(
                f"the shred ledger has no entry {seq}, which the database saw: "
                "ledger objects were removed"
            ) from None
        if at_head.hash != prev:
            raise LedgerError(
                f"ledger entry {seq} differs from the one the database recorded (changed)"
            )
        window.admit(at_head)  # a signed head closes the window before any later object
    newer: list[LedgerObject] = []
    while True:
        try:
            entry = parse_entry(await blobs.get(entry_key(seq + 1)), jwks, seq + 1)
        except BlobNotFound:
            # A gap with entries beyond it: one was removed (whose keys might be revived).
            if max(await blobs.list_keys(LEDGER_PREFIX), default="") > entry_key(seq):
                raise LedgerError(f"ledger entry {seq + 1} is missing") from None
            return newer
        if entry.seq != seq + 1 or entry.prev != prev:
            raise LedgerError(f"ledger entry {seq + 1} does not link to the one before (changed)")
        window.admit(entry)
        newer.append(entry)
        seq, prev = entry.seq, entry.hash


async def _hash_at(db: Database, blobs: BlobStore, seq: int) -> tuple[bytes | None, str]:
    """The hash of ledger object `seq` and where it was found: the object itself (which
    must verify, and be signed if the database knows the chain signed by then), or the
    checkpoint that folded it (None when neither holds it)."""
    async with db.untenanted_tx() as conn:
        head = await conn.fetchrow(Q.get_head)
    jwks = await published_keys(db)
    try:
        entry = parse_entry(await blobs.get(entry_key(seq)), jwks, seq)
    except BlobNotFound:
        folded = Folded(await read_checkpoints(blobs, jwks))
        return folded.hash_at(seq), "checkpoint"
    SignedWindow(head["signed_from"] if head is not None else None).admit(entry)
    return entry.hash, "entry"


async def locate_head(db: Database, blobs: BlobStore, seq: int, head: bytes) -> str:
    """Where the ledger shows that it reached entry `seq` with hash `head` (what a receipt
    names): "start" (seq 0), "entry" (the object is there) or "checkpoint" (folded, and
    the checkpoint names that hash). LedgerError when it does not: the ledger never
    reached it, or it was cut or changed."""
    if seq == 0:
        if head != GENESIS:
            raise LedgerError("the ledger's start has no other head than 32 zero bytes")
        return "start"
    found, where = await _hash_at(db, blobs, seq)
    if found is None:
        raise LedgerError(f"the shred ledger holds no entry {seq}, and no checkpoint folds it")
    if found != head:
        raise LedgerError(f"ledger entry {seq} is not the one named (changed)")
    return where


async def check_watermark(
    db: Database, blobs: BlobStore, watermark: LedgerWatermark | None
) -> None:
    """The ledger must reach the highest head the root-key store remembers: a restored
    old database with the ledger's newer objects removed is refused here, where the
    database's own (old) head could not tell. A head a checkpoint has folded since counts
    as reached when the checkpoint names the same hash."""
    kept = watermark.highest() if watermark is not None else None
    if kept is None:
        return
    found, _ = await _hash_at(db, blobs, kept.seq)
    if found is None:
        raise LedgerError(
            f"the shred ledger has no entry {kept.seq}, which this deployment published "
            "(the root-key store remembers it): ledger objects were removed"
        )
    if found != kept.hash:
        raise LedgerError(
            f"ledger entry {kept.seq} differs from the one this deployment published (changed)"
        )


async def reconcile_on_start(
    db: Database, blobs: BlobStore, watermark: LedgerWatermark | None = None,
    keyring: KeyRing | None = None,
) -> int:  # fmt: skip
    """Before serving: refuse a ledger cut or changed at the database's head; re-destroy
    every key the entries after that head name that the database still holds (a restored
    backup): subject and data keys, and a closed tenant's KEKs and HMAC key; and restore
    the erasures and holds their instruction entries record that the database lacks or
    holds in an older state (vault/services/ledger_instructions.py). With `keyring` (the
    vault's start-up passes it), a restored erasure then shreds every live key of the
    generations it covers, as the executor does, named in the ledger or not: the
    database may be a backup from a line of history an earlier restore abandoned, with
    keys of the subject the erasure's line never had; and a tenant closed again (the
    ledger names its HMAC key) gets the closure's own destruction of every key it still
    holds (workers/closure.py finish_restored_closure: a KEK version rotated in such a
    line, never named). Returns how many keys were destroyed.

    Entries up to the head need no look: each was published from this database's own
    outbox rows, which commit with the destruction they record, and the head moves only
    after publishing, so any copy of the database that holds the head holds those
    destructions too. A restored backup holds an older head and is reconciled from there;
    start-up therefore costs what was shredded since the backup, not the ledger's whole
    history. `datavault ledger verify` checks the whole chain.

    The ledger must also reach the head the root-key store remembers (`watermark`),
    which rises to the ledger's end here."""
    await check_watermark(db, blobs, watermark)
    objects = await entries_after_head(db, blobs)
    if objects and watermark is not None:
        await asyncio.to_thread(watermark.remember, LedgerHead(objects[-1].seq, objects[-1].hash))
    by_tenant: dict[uuid.UUID, dict[str, list[tuple[str, datetime]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    listed: dict[uuid.UUID, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    instructions: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for seq, entry in ((o.seq, e) for o in objects for e in o.entries):
        tenant_id = uuid.UUID(entry["tenant_id"])
        if is_instruction(entry):
            instructions[tenant_id].append(entry)
            continue
        at = datetime.fromisoformat(entry["destroyed_at"])
        by_tenant[tenant_id][entry["key_kind"]].append((entry["key_id"], at))
        listed[tenant_id].append((seq, entry))
    redestroyed = 0
    for tenant_id in by_tenant.keys() | instructions.keys():
        async with db.tenant_tx(tenant_id) as conn:
            for kind, keys in by_tenant[tenant_id].items():
                for start in range(0, len(keys), _RECONCILE_CHUNK):
                    chunk = keys[start : start + _RECONCILE_CHUNK]
                    redestroyed += await _redestroy(conn, tenant_id, kind, chunk)
            for start in range(0, len(listed[tenant_id]), _RECONCILE_CHUNK):
                await _record_published(
                    conn, tenant_id, listed[tenant_id][start : start + _RECONCILE_CHUNK]
                )
            # What erasures kept and which holds stand (vault/services/ledger_instructions.py),
            # after the keys: a restored erasure's items then see them destroyed.
            if instructions[tenant_id]:
                replayed = await replay(conn, tenant_id, instructions[tenant_id])
                # Cancellations, revocations, closures (vault/services/ledger_controls.py),
                # after the erasures that shredded, which they must not schedule again.
                await replay_controls(conn, tenant_id, instructions[tenant_id])
                # Restrictions, retention, console sign-outs, deleted webhooks
                # (vault/services/ledger_standing.py).
                await replay_standing(conn, tenant_id, instructions[tenant_id])
                if keyring is not None:
                    # A restored erasure covers every key of its generations, not only
                    # those the ledger names: a backup from a line of history an earlier
                    # restore abandoned holds keys the erasure's line never had. Last, so
                    # the holds, restrictions and retention it decides on are restored.
                    redestroyed += await shred_restored(
                        conn, keyring, tenant_id, replayed.restored_erasure_ids
                    )
            if keyring is not None:
                # A tenant the ledger closed again (its HMAC key named) whose backup, from a
                # line of history an earlier restore abandoned, holds keys the closing line
                # never had (a KEK version rotated there): the closure's own destruction.
                redestroyed += await finish_restored_closure(conn, keyring, tenant_id)
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
