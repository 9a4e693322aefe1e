"""Retention: data older than its category's delete_after_days is shredded (its data key
destroyed), unless a hold covers it; blobs then go with the sweeper.

Runs per tenant and category in small batches, each artefact or record version in its
own transaction so one held item does not stop the rest.
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

ARTEFACTS = Queries("artefacts")
RECORDS = Queries("records")

RETENTION_INTERVAL_SECONDS = 300.0  # retention is measured in days; every 5 minutes is ample
_BATCH = 200


async def apply_retention(db: Database, keyring: KeyRing, now: datetime | None = None) -> int:
    """Shred what has outlived its retention; return how many items were shredded."""
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
            shredded += await _expire_artefacts(db, keyring, tenant.id, category, cutoff)
            shredded += await _expire_records(db, keyring, tenant.id, category, cutoff)
    return shredded


async def _expire(
    db: Database,
    keyring: KeyRing,
    tenant_id: uuid.UUID,
    expired: list[Any],
    retire: Callable[[Connection, Any], Awaitable[object]],
) -> int:
    """Shred each expired item in its own transaction; a held one is skipped (kept until
    its hold goes) without stopping the rest."""
    done = 0
    for row in expired:
        try:
            async with db.tenant_tx(tenant_id) as conn:
                await keyring.destroy_data_key(conn, tenant_id, row["data_key_id"])
                await retire(conn, row)
            done += 1
        except Conflict:
            continue
    return done


async def _expire_artefacts(
    db: Database, keyring: KeyRing, tenant_id: uuid.UUID, category: str, cutoff: datetime
) -> int:
    async with db.tenant_tx(tenant_id) as conn:
        rows = await conn.fetch(ARTEFACTS.expired, tenant_id, category, cutoff, _BATCH)
    return await _expire(
        db, keyring, tenant_id, rows,
        lambda conn, row: conn.execute(ARTEFACTS.mark_deleted, tenant_id, row["id"]),
    )  # fmt: skip


async def _expire_records(
    db: Database, keyring: KeyRing, tenant_id: uuid.UUID, category: str, cutoff: datetime
) -> int:
    async with db.tenant_tx(tenant_id) as conn:
        rows = await conn.fetch(RECORDS.expired, tenant_id, category, cutoff, _BATCH)
    return await _expire(
        db, keyring, tenant_id, rows,
        lambda conn, row: conn.execute(
            RECORDS.retire_current, tenant_id, row["subject_id"], row["name"], row["version"], True
        ),
    )  # fmt: skip
