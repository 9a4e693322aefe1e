"""Session lifetimes with an injected clock against the real database: 30 minutes idle,
8 hours absolute, and expired sessions deleted."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from tests.support import Tenant
from vault.config import Settings
from vault.db.database import Database
from vault.domain.scopes import Scope
from vault.runtime import operator_context
from vault.services.api_keys import Principal
from vault.services.console_sessions import ABSOLUTE_LIFETIME, IDLE_LIFETIME, SessionStore
from workers.sweeper import sweep


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def _admin_key_id(url: str, tenant: Tenant) -> uuid.UUID:
    conn = await asyncpg.connect(url)
    try:
        key_id: uuid.UUID = await conn.fetchval(
            "SELECT id FROM api_keys WHERE tenant_id = $1", tenant.id
        )
    finally:
        await conn.close()
    return key_id


async def _rows(url: str, tenant: Tenant) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM console_sessions WHERE tenant_id = $1", tenant.id
            )
        )
    finally:
        await conn.close()


def _principal(tenant: Tenant, key_id: uuid.UUID) -> Principal:
    return Principal(tenant.id, key_id, tenant.admin_key.split("_")[1], frozenset({Scope.ADMIN}))


def test_an_idle_session_ends_after_30_minutes(database_url: str, tenant: Tenant) -> None:
    async def run() -> tuple[bool, bool, int]:
        clock = FakeClock()
        db = await Database.connect(database_url, max_size=2)
        try:
            store = SessionStore(db, clock)
            token, _ = await store.open(
                _principal(tenant, await _admin_key_id(database_url, tenant))
            )
            clock.now += IDLE_LIFETIME - timedelta(seconds=1)
            kept = await store.resume(token, None) is not None
            clock.now += IDLE_LIFETIME
            ended = await store.resume(token, None) is None
        finally:
            await db.close()
        return kept, ended, await _rows(database_url, tenant)

    kept, ended, rows = asyncio.run(run())
    assert kept
    assert ended
    assert rows == 0  # deleted on use, not just refused


def test_a_busy_session_still_ends_after_8_hours(database_url: str, tenant: Tenant) -> None:
    async def run() -> list[bool]:
        clock = FakeClock()
        db = await Database.connect(database_url, max_size=2)
        alive = []
        try:
            store = SessionStore(db, clock)
            token, _ = await store.open(
                _principal(tenant, await _admin_key_id(database_url, tenant))
            )
            start = clock.now
            while clock.now - start < ABSOLUTE_LIFETIME + timedelta(minutes=20):
                clock.now += timedelta(minutes=20)
                alive.append(await store.resume(token, None) is not None)
        finally:
            await db.close()
        return alive

    alive = asyncio.run(run())
    # Every 20 minutes for 8 h: alive until the 8th hour, then gone.
    assert alive[: int(ABSOLUTE_LIFETIME / timedelta(minutes=20)) - 1] == [True] * 23
    assert alive[-1] is False


def test_the_sweep_deletes_expired_sessions_only(database_url: str, tenant: Tenant) -> None:
    async def run() -> tuple[int, bool]:
        clock = FakeClock()
        db = await Database.connect(database_url, max_size=2)
        try:
            store = SessionStore(db, clock)
            key_id = await _admin_key_id(database_url, tenant)
            await store.open(_principal(tenant, key_id))
            clock.now += IDLE_LIFETIME + timedelta(minutes=1)
            fresh, _ = await store.open(_principal(tenant, key_id))
            deleted = await store.delete_expired(tenant.id)
            still = await store.resume(fresh, None) is not None
        finally:
            await db.close()
        return deleted, still

    deleted, still = asyncio.run(run())
    assert deleted == 1
    assert still


def test_an_unknown_or_oversized_token_opens_nothing(database_url: str) -> None:
    async def run() -> list[bool]:
        db = await Database.connect(database_url, max_size=2)
        try:
            store = SessionStore(db)
            return [await store.resume(t, None) is None for t in ("", "x" * 43, "x" * 5000)]
        finally:
            await db.close()

    assert asyncio.run(run()) == [True, True, True]


def test_the_blob_sweeper_also_deletes_expired_sessions(
    settings: Settings, database_url: str, tenant: Tenant
) -> None:
    async def run() -> tuple[int, int]:
        async with operator_context(settings, database_url) as ctx:
            key_id = await _admin_key_id(database_url, tenant)
            opened_at = datetime.now(UTC) - ABSOLUTE_LIFETIME - timedelta(minutes=1)
            old = SessionStore(ctx.db, lambda: opened_at)
            await old.open(_principal(tenant, key_id))
            await SessionStore(ctx.db).open(_principal(tenant, key_id))
            report = await sweep(ctx.db, ctx.blobs, ctx.keyring)
        return report.console_sessions_deleted, await _rows(database_url, tenant)

    deleted, left = asyncio.run(run())
    assert deleted >= 1
    assert left == 1  # the live session stays


def test_sessions_stay_in_their_tenant_under_row_level_security(
    database_url: str, tenant: Tenant, new_tenant: Callable[[], Tenant]
) -> None:
    other = new_tenant()

    async def run() -> tuple[int, int, int, bool]:
        db = await Database.connect(database_url, max_size=2)
        try:
            store = SessionStore(db)
            token, _ = await store.open(
                _principal(tenant, await _admin_key_id(database_url, tenant))
            )
            async with db.untenanted_tx() as conn:
                no_tenant = int(await conn.fetchval("SELECT count(*) FROM console_sessions"))
            async with db.tenant_tx(other.id) as conn:
                as_other = int(await conn.fetchval("SELECT count(*) FROM console_sessions"))
                # Writing a session row into another tenant is refused by the policy.
                try:
                    await conn.execute(
                        "INSERT INTO console_sessions VALUES ($1, $2, $3, $4, '{}', now(), now())",
                        b"x" * 32, uuid.uuid4(), tenant.id, uuid.uuid4(),
                    )  # fmt: skip
                    refused = False
                except asyncpg.InsufficientPrivilegeError:
                    refused = True
            async with db.tenant_tx(tenant.id) as conn:
                own = int(await conn.fetchval("SELECT count(*) FROM console_sessions"))
            assert await store.resume(token, None) is not None
        finally:
            await db.close()
        return no_tenant, as_other, own, refused

    no_tenant, as_other, own, refused = asyncio.run(run())
    assert (no_tenant, as_other) == (0, 0)
    assert own >= 1
    assert refused
