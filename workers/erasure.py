"""The erasure executor: shreds due instructions, one transaction each.

Each instruction is claimed with FOR UPDATE SKIP LOCKED, so any number of workers run at
once without doing one twice; its shred (destroyed keys, ledger outbox entries, items,
the status change to in_progress and the transition's event row) commits as one
transaction. A worker killed at any point leaves the instruction either untouched
(scheduled, picked up again) or fully shredded and waiting for the ledger publisher,
never half-shredded and marked done. Instructions kept by holds are retried every pass,
so a released hold lets them finish at once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.services.keyring import KeyRing
from vault.services.tenants import list_tenants

Q = Queries("erasures")

# DESIGN.md: a non-held erasure completes within a minute of not_before.
EXECUTOR_INTERVAL_SECONDS = 2.0
_MAX_PER_TENANT_PASS = 100


async def run_due_erasures(db: Database, keyring: KeyRing, now: datetime | None = None) -> int:
    """Shred every due instruction (and retry held ones); return how many were shredded."""
    done = 0
    for tenant in await list_tenants(db):
        for _ in range(_MAX_PER_TENANT_PASS):
            async with db.tenant_tx(tenant.id) as conn:
                erasure = await conn.fetchrow(Q.claim_due, tenant.id, now or datetime.now(UTC))
                if erasure is None:
                    break
                await _shred(conn, keyring, tenant.id, erasure)
                await conn.execute(Q.set_status, tenant.id, erasure["id"], "in_progress")
                await conn.execute(
                    Q.event, tenant.id, erasure["id"], "scheduled", "in_progress", None, None
                )
            done += 1
        async with db.tenant_tx(tenant.id) as conn:
            for erasure in await conn.fetch(Q.claim_held, tenant.id):
                if await _shred(conn, keyring, tenant.id, erasure):
                    # Something more was shredded: back to waiting on the ledger.
                    await conn.execute(Q.set_status, tenant.id, erasure["id"], "in_progress")
                    await conn.execute(
                        Q.event,
                        tenant.id,
                        erasure["id"],
                        "held",
                        "in_progress",
                        None,
                        "hold released",
                    )
    return done


async def _shred(conn: Connection, keyring: KeyRing, tenant_id: uuid.UUID, erasure: Any) -> int:
    """Destroy the generation's keys that no hold keeps; record each outcome. Returns how
    many keys were destroyed now."""
    if erasure["subject_id"] is None:
        return 0  # an unknown reference: nothing to shred
    destroyed, kept = await keyring.destroy_subject_keys(
        conn, tenant_id, erasure["subject_id"], erasure["generation"]
    )
    for key in destroyed:
        await conn.execute(
            Q.upsert_item,
            tenant_id,
            erasure["id"],
            key.id,
            key.category,
            "shredded",
            key.destroyed_at,
            None,
        )
        await conn.execute(
            Q.outbox, tenant_id, "subject", str(key.id), erasure["id"], key.destroyed_at
        )
        await conn.execute(Q.shred_artefacts_of_key, tenant_id, key.id)
        await conn.execute(Q.shred_records_of_key, tenant_id, key.id)
        await conn.execute(Q.clear_ref_copy, tenant_id, erasure["subject_id"], key.id)
    for held in kept:
        await conn.execute(
            Q.upsert_item, tenant_id, erasure["id"], held.id, held.category, "held", None,
            list(held.hold_ids),
        )  # fmt: skip
    return len(destroyed)
