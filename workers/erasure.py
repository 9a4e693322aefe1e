"""The erasure executor: shreds due instructions, a batch per transaction.

Categories under statutory retention (keep_at_least_days, counted from the newest data of
that category in the generation) are kept, like held ones, until their time has passed.

Instructions are claimed with FOR UPDATE SKIP LOCKED, so any number of workers run at
once without doing one twice, up to _BATCH per transaction; each one's shred (destroyed
keys, ledger outbox entries, items, the status change to in_progress and the
transition's event row) commits in that transaction, so it is all or nothing. A worker
killed at any point leaves every instruction either untouched (scheduled, picked up
again) or fully shredded and waiting for the ledger publisher, never half-shredded and
marked done. Held instructions whose hold was released or expired, or whose retention
ended, are retried every pass, so they finish at once; the rest are retried in turn, a
few a pass.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from vault.db.database import CONNECTION_ERRORS, Connection, Database
from vault.db.sql import Queries
from vault.domain.erasures import ErasureStatus
from vault.domain.tenant_settings import TenantSettings
from vault.errors import Unavailable
from vault.observability import events
from vault.services.erasure_transitions import transition, transition_many
from vault.services.keyring import KeyRing, SubjectKeysToDestroy
from vault.services.ledger_instructions import record_erasures
from vault.services.tenants import list_tenants, load_settings_kept
from vault.services.wakeups import LEDGER_PENDING, notify
from workers.isolation import isolated

Q = Queries("erasures")

# DESIGN.md: a non-held erasure completes within a minute of not_before.
EXECUTOR_INTERVAL_SECONDS = 2.0
# Instructions per tenant per round: tenants take turns, so one tenant's burst of
# erasures does not hold up another's; rounds repeat until no tenant has work left.
_ROUND = 50
# Instructions per transaction within a round (issue 19: one commit per instruction was
# most of a burst's cost).
_BATCH = 25
# Batches of one tenant shredded at once, each on a pooled connection of its own.
_PARALLEL = 4
# Held instructions per tenant per pass retried in turn, besides those whose holds or
# retention visibly ended (all retried every pass).
_HELD_ROTATION = 20
# Where each tenant's turn through its held instructions continues next pass. In memory,
# per process: a restarted worker starts from the beginning, which costs one more turn.
_rotation: dict[uuid.UUID, tuple[datetime, uuid.UUID]] = {}


async def run_due_erasures(db: Database, keyring: KeyRing, now: datetime | None = None) -> int:
    """Shred every due instruction (and retry held ones); return how many were shredded."""
    done = 0
    tenants = [tenant.id for tenant in await list_tenants(db)]
    busy = list(tenants)
    failed: set[uuid.UUID] = set()  # left for the next pass, so the others go on
    while busy:
        still_busy = []
        for tenant_id in busy:
            # Several batches at once, on connections of their own (SKIP LOCKED gives
            # each its own instructions): the work is round trips, which overlap.
            turns = await asyncio.gather(
                *(_shred_due(db, keyring, tenant_id, now, failed) for _ in range(_PARALLEL))
            )
            done += sum(shredded for shredded, _ in turns)
            if any(more for _, more in turns):
                still_busy.append(tenant_id)
        busy = still_busy
    for tenant_id in tenants:
        await _retry_held(db, keyring, tenant_id, now)
    return done


async def _shred_due(
    db: Database, keyring: KeyRing, tenant_id: uuid.UUID, now: datetime | None,
    failed: set[uuid.UUID],
) -> tuple[int, bool]:  # fmt: skip
    """Up to _ROUND due instructions of one tenant: how many were shredded, and whether
    the tenant may have more. They go in batches of _BATCH per transaction; a batch in
    which one fails rolls back whole and is redone one at a time, so the failing one is
    left for the next pass and the others go on."""
    shredded = 0
    while shredded < _ROUND:
        try:
            done = await _shred_batch(db, keyring, tenant_id, now, failed)
        except Exception as exc:
            if isinstance(exc, (Unavailable, *CONNECTION_ERRORS)):
                raise
            done = await _shred_singly(db, keyring, tenant_id, now, failed)
        if done == 0:
            return shredded, False
        shredded += done
    return shredded, True


async def _shred_batch(
    db: Database, keyring: KeyRing, tenant_id: uuid.UUID, now: datetime | None,
    failed: set[uuid.UUID],
) -> int:  # fmt: skip
    """Up to _BATCH due instructions shredded in one transaction: one commit (one WAL
    flush) for them all. Each one's shred, items and status change are in it, so each
    is still all or nothing. Returns how many (0: none was due)."""
    async with db.tenant_tx(tenant_id) as conn:
        claimed = await conn.fetch(
            Q.claim_due, tenant_id, now or datetime.now(UTC), list(failed), _BATCH
        )
        if not claimed:
            return 0
        # A settings change waits for this batch's commit: every instruction in it is
        # decided on the settings read here (red team 3), and stands when it commits.
        settings = await load_settings_kept(conn, tenant_id)
        destroyed = await _shred_claimed(conn, keyring, tenant_id, claimed, now, settings)
        # Their ledger rows are committed with this: the publisher runs at once.
        await notify(conn, LEDGER_PENDING, tenant_id)
    for erasure, count in zip(claimed, destroyed, strict=True):
        events.erasure_shredded(tenant_id, erasure["id"], count)
    return len(claimed)


async def _shred_singly(
    db: Database, keyring: KeyRing, tenant_id: uuid.UUID, now: datetime | None,
    failed: set[uuid.UUID],
) -> int:  # fmt: skip
    """What _shred_batch does, one instruction per transaction (after a batch failed)."""
    shredded = 0
    for _ in range(_BATCH):
        with isolated("erasure_shred_failed", failed) as claimed:
            async with db.tenant_tx(tenant_id) as conn:
                rows = await conn.fetch(
                    Q.claim_due, tenant_id, now or datetime.now(UTC), list(failed), 1
                )
                if not rows:
                    return shredded
                claimed.append(rows[0]["id"])
                [destroyed] = await _shred_claimed(conn, keyring, tenant_id, rows, now)
                await notify(conn, LEDGER_PENDING, tenant_id)
            events.erasure_shredded(tenant_id, rows[0]["id"], destroyed)
            shredded += 1
    return shredded


async def _shred_claimed(
    conn: Connection, keyring: KeyRing, tenant_id: uuid.UUID, erasures: Sequence[Any],
    now: datetime | None, settings: TenantSettings | None = None,
) -> list[int]:  # fmt: skip
    """Shred claimed instructions and move them to in_progress; keys destroyed, each."""
    outcomes = await _shred(conn, keyring, tenant_id, erasures, now or datetime.now(UTC), settings)
    ids = [erasure["id"] for erasure in erasures]
    # What each covers and kept, outside PostgreSQL too: a restored backup from before it
    # must not forget it (vault/services/ledger_instructions.py).
    await record_erasures(conn, tenant_id, ids)
    await transition_many(conn, tenant_id, ids, ErasureStatus.SCHEDULED, ErasureStatus.IN_PROGRESS)
    return [destroyed for destroyed, _ in outcomes]


async def _retry_held(
    db: Database, keyring: KeyRing, tenant_id: uuid.UUID, now: datetime | None
) -> None:
    """Held erasures: shred what holds and retention no longer keep.

    Every held instruction that a released or expired hold or an ended retention may let
    go is retried this pass, so erasures that stay held (billing kept for years) never
    crowd out one whose hold was just released. A few more are retried in turn, so every
    held one is looked at again within a bounded number of passes whatever the reason."""
    after: tuple[datetime, uuid.UUID] | None = None
    failed: set[uuid.UUID] = set()  # the cursors move past a failed one anyway
    while True:
        with isolated("erasure_shred_failed", failed) as claimed:
            async with db.tenant_tx(tenant_id) as conn:
                erasure = await conn.fetchrow(
                    Q.claim_held_releasable, tenant_id, now or datetime.now(UTC),
                    *(after or (None, None)),
                )  # fmt: skip
                if erasure is None:
                    break
                after = (erasure["requested_at"], erasure["id"])
                claimed.append(erasure["id"])
                destroyed = await _retry_one(conn, keyring, tenant_id, erasure, now)
            if destroyed:
                events.erasure_shredded(tenant_id, erasure["id"], destroyed)
    for _ in range(_HELD_ROTATION):
        with isolated("erasure_shred_failed", failed) as claimed:
            async with db.tenant_tx(tenant_id) as conn:
                start = _rotation.get(tenant_id)
                erasure = await conn.fetchrow(
                    Q.claim_held_after, tenant_id, *(start or (None, None))
                )
                if erasure is None:
                    _rotation.pop(tenant_id, None)  # the end: from the start next pass
                    return
                _rotation[tenant_id] = (erasure["requested_at"], erasure["id"])
                claimed.append(erasure["id"])
                destroyed = await _retry_one(conn, keyring, tenant_id, erasure, now)
            if destroyed:
                events.erasure_shredded(tenant_id, erasure["id"], destroyed)


async def shred_restored(
    conn: Connection, keyring: KeyRing, tenant_id: uuid.UUID, erasure_ids: Sequence[uuid.UUID],
    now: datetime | None = None,
) -> int:  # fmt: skip
    """Erasures the shred ledger restored at start-up (ledger_instructions.replay), in the
    caller's transaction: every live key of the generations each covers is shredded now
    as the executor shreds (or kept as a hold or statutory retention keeps it), not only
    the keys the ledger names. A backup from a line of history an earlier restore
    abandoned holds keys of the subject written there, in generations an erasure of the
    new line covers, that the new line never had and so the ledger never named. Returns
    how many keys were destroyed (each with its ledger row, naming the erasure)."""
    if not erasure_ids:
        return 0
    destroyed = 0
    for erasure in await conn.fetch(Q.restored_for_shred, tenant_id, list(erasure_ids)):
        if erasure["status"] == ErasureStatus.HELD:
            destroyed += await _retry_one(conn, keyring, tenant_id, erasure, now)
        else:  # in_progress: what it keeps now, the publisher holds it for on completion
            [(gone, _)] = await _shred(
                conn, keyring, tenant_id, [erasure], now or datetime.now(UTC)
            )
            destroyed += gone
    if destroyed:
        await notify(conn, LEDGER_PENDING, tenant_id)
    return destroyed


async def _retry_one(
    conn: Connection, keyring: KeyRing, tenant_id: uuid.UUID, erasure: Any, now: datetime | None
) -> int:
    """How many more keys were shredded (0 and something still kept: it stays held)."""
    [(destroyed, kept)] = await _shred(
        conn, keyring, tenant_id, [erasure], now or datetime.now(UTC)
    )
    if destroyed or not kept:
        # Something more was shredded, or nothing is kept any more: back to waiting on
        # the ledger, which completes it (or holds it again for what is still kept).
        await transition(
            conn, tenant_id, erasure["id"], ErasureStatus.HELD, ErasureStatus.IN_PROGRESS,
            detail="no longer kept",
        )  # fmt: skip
        await notify(conn, LEDGER_PENDING, tenant_id)
    return destroyed


async def _shred(
    conn: Connection, keyring: KeyRing, tenant_id: uuid.UUID, erasures: Sequence[Any],
    now: datetime, settings: TenantSettings | None = None,
) -> list[tuple[int, int]]:  # fmt: skip
    """For each erasure: destroy the keys of every generation it covers (from_generation
    .. generation: migration 0016) that neither a hold nor statutory retention keeps, and
    record each outcome. Returns (keys destroyed now, keys still kept) of each, in order.
    `settings`: the tenant's, read in this transaction (a batch reads them once).

    What retention decides on is read for all of them in one statement before any key
    is destroyed, as it was read before each destroy; each generation's destroy is one
    call of the key ring's (the subject's lock, the hold check, the destroys), all of
    them in one statement, in subject id order (issue 19, fifth round: a round trip
    each; the order: KeyRing.destroy_many_subject_keys); the items of all of them are
    written after, in one round trip each kind."""
    covering = [erasure for erasure in erasures if erasure["subject_id"] is not None]
    if not covering:  # unknown references: nothing to shred
        return [(0, 0)] * len(erasures)
    settings = settings or await load_settings_kept(conn, tenant_id)
    ids = [erasure["id"] for erasure in covering]
    live: dict[tuple[uuid.UUID, int], list[Any]] = {}
    kept_categories = settings.categories_retention_may_keep()
    for row in await conn.fetch(Q.shred_inputs, tenant_id, ids, kept_categories):
        live.setdefault((row["erasure_id"], row["generation"]), []).append(row)
    # Each generation's ask, decided before any key is destroyed (as it was read before
    # each destroy), then all destroyed in one statement, each ask as its own call.
    asks: list[SubjectKeysToDestroy] = []
    owners: list[uuid.UUID] = []  # the erasure of each ask
    retained_items: list[tuple[Any, ...]] = []
    kept_by_retention: dict[uuid.UUID, int] = {}
    for erasure in covering:
        for generation in range(erasure["from_generation"], erasure["generation"] + 1):
            keys = live.get((erasure["id"], generation), [])
            retained = _retained(keys, settings, now)
            categories = [row["category"] for row in keys if row["category"] not in retained]
            asks.append(
                SubjectKeysToDestroy(
                    erasure["subject_id"], generation, tuple(categories), erasure["id"]
                )
            )
            owners.append(erasure["id"])
            retained_items += [
                (tenant_id, erasure["id"], key_id, category, until)
                for category, (key_id, until) in retained.items()
            ]
            kept_by_retention[erasure["id"]] = kept_by_retention.get(erasure["id"], 0) + len(
                retained
            )
    outcomes = await keyring.destroy_many_subject_keys(conn, tenant_id, asks)
    counts: dict[uuid.UUID, tuple[int, int]] = {
        erasure["id"]: (0, kept_by_retention.get(erasure["id"], 0)) for erasure in covering
    }
    items: list[tuple[Any, ...]] = []
    for erasure_id, (gone, held) in zip(owners, outcomes, strict=True):
        items += [
            (tenant_id, erasure_id, key.id, key.category, "shredded", key.destroyed_at, None)
            for key in gone
        ] + [
            (tenant_id, erasure_id, key.id, key.category, "held", None, list(key.hold_ids))
            for key in held
        ]
        destroyed, kept = counts[erasure_id]
        counts[erasure_id] = (destroyed + len(gone), kept + len(held))
    if items:
        await conn.executemany(Q.upsert_item, items)  # one round trip for all
    if retained_items:
        await conn.executemany(Q.upsert_retained, retained_items)
    # Kept keys destroyed since by another path (a tenant's closure) are shredded items.
    await conn.execute(Q.settle_items, tenant_id, ids)
    return [counts.get(erasure["id"], (0, 0)) for erasure in erasures]


def _retained(
    keys: Sequence[Any], settings: TenantSettings, now: datetime
) -> dict[str, tuple[uuid.UUID, datetime]]:
    """The live keys of one generation that statutory retention keeps, by category: the
    key and until when (the later of what the settings give, counted from the category's
    newest data, and what a restored erasure stated)."""
    retained: dict[str, tuple[uuid.UUID, datetime]] = {}
    for row in keys:
        untils = [row["stated_until"]]
        if settings.may_keep(row["category"]) and row["newest"] is not None:
            untils.append(settings.kept_until(row["category"], row["newest"]))
        until = max((t for t in untils if t is not None), default=None)
        if until is not None and until > now:
            retained[row["category"]] = (row["key_id"], until)
    return retained
