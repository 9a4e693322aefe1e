"""Retention: data older than its category's delete_after_days is shredded (its data key
destroyed), unless a hold covers it; blobs then go with the sweeper. Record versions a
hold kept when they were replaced are shredded once no hold covers them any more.

Runs per tenant and category in batches, each artefact or record version in its own
transaction so one item does not stop the rest. The queries leave out what a hold covers
and walk on from the last item seen, so held items, however many, never stall what comes
after them; the destroy itself checks the holds again under the subject's row lock. Safe
in several processes at once: each destroy and state change is conditional, so the
second process to reach an item changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.errors import Conflict
from vault.services.keyring import KeyRing
from vault.services.tenants import list_tenants, load_settings
from workers.isolation import isolated

ARTEFACTS = Queries("artefacts")
RECORDS = Queries("records")

RETENTION_INTERVAL_SECONDS = 300.0  # retention is measured in days; every 5 minutes is ample
_BATCH = 200


async def apply_retention(
    db: Database, keyring: KeyRing, now: datetime | None = None, *, batch: int = _BATCH
) -> int:
    """Shred what has outlived its retention, and replaced record versions no hold keeps
    any more; return how many items were shredded."""
    now = now or datetime.now(UTC)
    shredded = 0
    for tenant in await list_tenants(db):
        if tenant.status == "closed":
            continue
        async with db.tenant_tx(tenant.id) as conn:
            settings = await load_settings(conn, tenant.id)
        for category, rules in settings.retention.items():
            if rules.delete_after_days is None:
                continue
            cutoff = now - timedelta(days=rules.delete_after_days)
            shredded += await _expire_artefacts(db, keyring, tenant.id, category, cutoff, batch)
            shredded += await _expire_records(db, keyring, tenant.id, category, cutoff, batch)
        shredded += await _shred_released_versions(db, keyring, tenant.id, batch)
    return shredded


async def _expire(
    db: Database,
    keyring: KeyRing,
    tenant_id: uuid.UUID,
    expired: list[Any],
    retire: Callable[[Connection, Any], Awaitable[object]],
) -> int:
    """Shred each item in its own transaction; one a hold placed meanwhile keeps is
    skipped (kept until its hold goes), and one that fails is logged and tried again
    next pass, without stopping the rest."""
    done = 0
    failed: set[uuid.UUID] = set()
    for row in expired:
        with isolated("retention_item_failed", failed) as claimed:
            claimed.append(row["data_key_id"])
            try:
                async with db.tenant_tx(tenant_id) as conn:
                    destroyed = await keyring.destroy_data_key(conn, tenant_id, row["data_key_id"])
                    await retire(conn, row)
            except Conflict:
                continue
            done += int(destroyed)
    return done


async def _expire_artefacts(
    db: Database,
    keyring: KeyRing,
    tenant_id: uuid.UUID,
    category: str,
    cutoff: datetime,
    batch: int,
) -> int:
    done, after = 0, (None, None)
    while True:
        async with db.tenant_tx(tenant_id) as conn:
            rows = await conn.fetch(ARTEFACTS.expired, tenant_id, category, cutoff, *after, batch)
        done += await _expire(
            db, keyring, tenant_id, rows,
            lambda conn, row: conn.execute(ARTEFACTS.mark_deleted, tenant_id, row["id"]),
        )  # fmt: skip
        if len(rows) < batch:
            return done
        after = (rows[-1]["created_at"], rows[-1]["id"])


async def _expire_records(
    db: Database,
    keyring: KeyRing,
    tenant_id: uuid.UUID,
    category: str,
    cutoff: datetime,
    batch: int,
) -> int:
    done, after = 0, (None, None, None)
    while True:
        async with db.tenant_tx(tenant_id) as conn:
            rows = await conn.fetch(RECORDS.expired, tenant_id, category, cutoff, *after, batch)
        done += await _expire(
            db, keyring, tenant_id, rows,
            lambda conn, row: conn.execute(
                RECORDS.retire_current, tenant_id, row["subject_id"], row["name"],
                row["version"], True,
            ),
        )  # fmt: skip
        if len(rows) < batch:
            return done
        last = rows[-1]
        after = (last["created_at"], last["subject_id"], last["name"])


async def _shred_released_versions(
    db: Database, keyring: KeyRing, tenant_id: uuid.UUID, batch: int
) -> int:
    """Replaced record versions that a hold kept and no hold covers now (DESIGN.md: kept
    data is shredded once the last hold covering it is released or expires)."""
    done, after = 0, (None, None, None)
    while True:
        async with db.tenant_tx(tenant_id) as conn:
            rows = await conn.fetch(RECORDS.released_versions, tenant_id, *after, batch)
        done += await _expire(
            db, keyring, tenant_id, rows,
            lambda conn, row: conn.execute(
                RECORDS.shred_released_version, tenant_id, row["subject_id"], row["name"],
                row["version"],
            ),
        )  # fmt: skip
        if len(rows) < batch:
            return done
        last = rows[-1]
        after = (last["subject_id"], last["name"], last["version"])
