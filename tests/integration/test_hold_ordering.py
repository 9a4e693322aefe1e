"""A tenant-wide hold and a destroy are strictly ordered (DESIGN.md "Legal holds"): the
hold check every destroy path runs (`dv_holds_covering`) and the placing of a
tenant-wide hold (holds.sql `lock_tenant_holds`) take one per-tenant advisory lock,
shared and exclusive. Tested on two real connections."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from tests.api.helpers import data_keys, put_record
from tests.support import ServerThread, Tenant
from vault.db.sql import Queries

HOLDS = Queries("holds")
WAIT = 0.5


async def _as_app(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> None:
    await conn.execute("SET ROLE datavault_app")
    await conn.execute("SELECT set_config('datavault.tenant_id', $1, true)", str(tenant_id))


async def _subject_of(url: str, tenant_id: uuid.UUID) -> uuid.UUID:
    conn = await asyncpg.connect(url)
    try:
        subject: uuid.UUID = await conn.fetchval(
            "SELECT id FROM subjects WHERE tenant_id = $1 LIMIT 1", tenant_id
        )
        return subject
    finally:
        await conn.close()


async def _place_tenant_hold(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> uuid.UUID:
    """What HoldService.place does for a tenant-wide hold, inside the caller's transaction."""
    hold_id = uuid.uuid4()
    await conn.fetchval(HOLDS.lock_tenant_holds, tenant_id)
    await conn.execute(
        "INSERT INTO holds (tenant_id, id, reason, reference, placed_by)"
        " VALUES ($1, $2, 'litigation', 'case 1', $3)",
        tenant_id, hold_id, uuid.uuid4(),
    )  # fmt: skip
    return hold_id


def _seed(server: ServerThread, tenant: Tenant, database_url: str) -> uuid.UUID:
    with server.client() as http:
        keys = data_keys(http, tenant)
        put_record(http, keys.ingest, f"user-{uuid.uuid4().hex[:8]}", "profile", b"{}")
    return asyncio.run(_subject_of(database_url, tenant.id))


def test_a_destroy_check_waits_for_a_tenant_hold_being_placed_and_then_sees_it(
    server: ServerThread, tenant: Tenant, database_url: str
) -> None:
    subject = _seed(server, tenant, database_url)

    async def run() -> tuple[bool, list[uuid.UUID], uuid.UUID]:
        placer, checker = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
        try:
            placing = placer.transaction()
            await placing.start()
            hold_id = await _place_tenant_hold(placer, tenant.id)
            checking = checker.transaction()
            await checking.start()
            await _as_app(checker, tenant.id)
            check = asyncio.ensure_future(
                checker.fetch(HOLDS.covering, tenant.id, subject, ["account"])
            )
            await asyncio.sleep(WAIT)
            waited = not check.done()
            await placing.commit()
            covering = [row["id"] for row in await asyncio.wait_for(check, 10)]
            await checking.rollback()
            return waited, covering, hold_id
        finally:
            await placer.close()
            await checker.close()

    waited, covering, hold_id = asyncio.run(run())
    assert waited
    assert covering == [hold_id]


def test_a_tenant_hold_waits_for_a_destroy_check_in_flight(
    server: ServerThread, tenant: Tenant, database_url: str
) -> None:
    subject = _seed(server, tenant, database_url)

    async def run() -> tuple[list[uuid.UUID], bool, bool]:
        placer, checker = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
        try:
            checking = checker.transaction()
            await checking.start()
            await _as_app(checker, tenant.id)
            covering = await checker.fetch(HOLDS.covering, tenant.id, subject, ["account"])
            placing = placer.transaction()
            await placing.start()
            place = asyncio.ensure_future(_place_tenant_hold(placer, tenant.id))
            await asyncio.sleep(WAIT)
            waited = not place.done()
            await checking.commit()
            await asyncio.wait_for(place, 10)
            await placing.rollback()
            return [row["id"] for row in covering], waited, place.done()
        finally:
            await placer.close()
            await checker.close()

    covering, waited, placed = asyncio.run(run())
    assert covering == []
    assert waited
    assert placed
