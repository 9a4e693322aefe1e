"""Retention: data older than its category's delete_after_days is shredded (its data key
destroyed), unless a hold covers it, its subject's processing is restricted (which
freezes deletion), or statutory retention still keeps it (a shortened
keep_at_least_days binds older data only after the closure delay: TenantSettings
.kept_until); blobs then go with the sweeper. Record versions a hold kept when they were
replaced are shredded once no hold covers them any more.

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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.domain.tenant_settings import TenantSettings
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

            for walk in (_EXPIRED_ARTEFACTS, _EXPIRED_RECORDS):
                shredded += await _walk(
                    db, keyring, tenant.id, walk, (category, cutoff), batch,
                    _kept_by_statute(settings, category, now),
                )  # fmt: skip
        shredded += await _walk(db, keyring, tenant.id, _RELEASED_VERSIONS, (), batch)
    return shredded


def _kept_by_statute(
    settings: TenantSettings, category: str, now: datetime
) -> Callable[[Any], bool]:
    """Whether statutory retention still keeps an expired item (a shortened
    keep_at_least_days binds older data only after the closure delay)."""

    def still_kept(row: Any) -> bool:
        until = settings.kept_until(category, row["created_at"])
        return until is not None and until > now

    return still_kept


async def _expire(
    db: Database,
    keyring: KeyRing,
    tenant_id: uuid.UUID,
    expired: list[Any],
    retire: Callable[[Connection, Any], Awaitable[object]],
) -> int:
    """Shred each item in its own transaction; one a hold or a restriction placed
    meanwhile keeps is skipped (kept until it goes), and one that fails is logged and
    tried again next pass, without stopping the rest."""
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


@dataclass(frozen=True)
class _Walk:
    """One kind of item retention shreds: the query that pages through them (tenant, its
    own parameters, the cursor, the batch size), the row columns the cursor is made of,
    and the statement that retires an item whose key was destroyed."""

    query: str
    cursor: tuple[str, ...]
    retire: Callable[[Connection, uuid.UUID, Any], Awaitable[object]]


_EXPIRED_ARTEFACTS = _Walk(
    ARTEFACTS.expired,
    ("created_at", "id"),
    lambda conn, tenant_id, row: conn.execute(ARTEFACTS.mark_deleted, tenant_id, row["id"]),
)
_EXPIRED_RECORDS = _Walk(
    RECORDS.expired,
    ("created_at", "subject_id", "name"),
    lambda conn, tenant_id, row: conn.execute(
        RECORDS.retire_current, tenant_id, row["subject_id"], row["name"], row["version"], True
    ),
)
# Replaced record versions that a hold kept and no hold covers now (DESIGN.md: kept data
# is shredded once the last hold covering it is released or expires).
_RELEASED_VERSIONS = _Walk(
    RECORDS.released_versions,
    ("subject_id", "name", "version"),
    lambda conn, tenant_id, row: conn.execute(
        RECORDS.shred_released_version, tenant_id, row["subject_id"], row["name"], row["version"]
    ),
)


async def _walk(
    db: Database, keyring: KeyRing, tenant_id: uuid.UUID, walk: _Walk, params: tuple[Any, ...],
    batch: int, still_kept: Callable[[Any], bool] = lambda row: False,
) -> int:  # fmt: skip
    """Shred every item the walk's query finds, a batch at a time, to the end; items
    `still_kept` are passed over (the cursor moves past them)."""
    done, after = 0, (None,) * len(walk.cursor)
    while True:
        async with db.tenant_tx(tenant_id) as conn:
            rows = await conn.fetch(walk.query, tenant_id, *params, *after, batch)
        done += await _expire(
            db, keyring, tenant_id, [row for row in rows if not still_kept(row)],
            lambda conn, row: walk.retire(conn, tenant_id, row),
        )  # fmt: skip
        if len(rows) < batch:
            return done
        after = tuple(rows[-1][column] for column in walk.cursor)
