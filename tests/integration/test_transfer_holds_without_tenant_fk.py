"""Transfer holds without transfer_keys' foreign key to tenants (migration 0045, issue 19,
eighth round). The key made every held read lock its tenant's one row FOR KEY SHARE; what
it guaranteed, that a hold names an existing tenant, the inserts guarantee themselves:
`dv_transfer_hold` holds only a live key chain of the tenant it is given, and row-level
security admits only the transaction's own tenant. Attacked here: another tenant's key,
a tenant that does not exist, a raw insert for another tenant, a revoked key's read; and
a read no longer waits for whoever holds its tenant's row (a key rotation's lock).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.helpers import auth, create_key, from_ip, put_record, record_url
from tests.support import ServerThread, Tenant
from vault.db.database import Database


def _query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def _data_key_of(url: str, tenant: Tenant, name: str) -> uuid.UUID:
    rows = _query(
        url, "SELECT data_key_id FROM records WHERE tenant_id = $1 AND name = $2 AND current",
        tenant.id, name,
    )  # fmt: skip
    assert len(rows) == 1
    return uuid.UUID(str(rows[0][0]))


def _held(url: str, transfer: uuid.UUID) -> int:
    rows = _query(url, "SELECT count(*) FROM transfer_keys WHERE transfer_id = $1", transfer)
    return int(rows[0][0])


def _written(server: ServerThread, tenant: Tenant, name: str) -> dict[str, Any]:
    with server.client() as http:
        key = create_key(http, tenant, ["ingest", "read"])
        assert put_record(http, key, f"holder-{name}", name, b'{"a": 1}').status_code in (200, 201)
    return key


def test_no_hold_of_another_tenants_key_nor_for_a_tenant_that_does_not_exist(
    server: ServerThread, new_tenant: Callable[[], Tenant]
) -> None:
    first, second = new_tenant(), new_tenant()
    _written(server, first, "mine")
    _written(server, second, "theirs")
    theirs = _data_key_of(server.database_url, second, "theirs")
    for tenant_id in (first.id, uuid.uuid4()):  # the wrong tenant, and none at all
        transfer = uuid.uuid4()
        held = _query(
            server.database_url, "SELECT dv_transfer_hold($1, $2, $3, 60)",
            tenant_id, transfer, theirs,
        )  # fmt: skip
        assert held[0][0] is False
        assert _held(server.database_url, transfer) == 0
    transfer = uuid.uuid4()  # the owner's own hold still works
    held = _query(
        server.database_url, "SELECT dv_transfer_hold($1, $2, $3, 60)", second.id, transfer, theirs
    )
    assert held[0][0] is True
    assert _held(server.database_url, transfer) == 1
    _query(server.database_url, "DELETE FROM transfer_keys WHERE transfer_id = $1", transfer)


def test_a_raw_hold_for_another_tenant_is_refused(
    server: ServerThread, new_tenant: Callable[[], Tenant]
) -> None:
    first, second = new_tenant(), new_tenant()
    _written(server, second, "theirs")
    theirs = _data_key_of(server.database_url, second, "theirs")

    async def attempt() -> None:
        db = await Database.connect(server.database_url, max_size=1)
        try:
            async with db.tenant_tx(first.id) as conn:
                await conn.execute(
                    "INSERT INTO transfer_keys (tenant_id, transfer_id, data_key_id, held_until)"
                    " VALUES ($1, $2, $3, now() + interval '1 minute')",
                    second.id, uuid.uuid4(), theirs,
                )  # fmt: skip
        finally:
            await db.close()

    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        asyncio.run(attempt())


def test_a_revoked_keys_read_holds_nothing(
    server: ServerThread, new_tenant: Callable[[], Tenant]
) -> None:
    tenant = new_tenant()
    key = _written(server, tenant, "revoked")
    with server.client() as http:
        assert http.delete(f"/v1/api-keys/{key['id']}", headers=tenant.auth()).status_code == 204
        # A client of its own: the shared vault's other tests' 401s from 127.0.0.1 count
        # against one failed-authentication budget (429 past 20 a minute).
        alone = {**auth(key), **from_ip(f"198.51.100.{uuid.uuid4().int % 250 + 1}")}
        assert http.get(record_url("holder-revoked", "revoked"), headers=alone).status_code == 401
    rows = _query(
        server.database_url, "SELECT count(*) FROM transfer_keys WHERE tenant_id = $1", tenant.id
    )
    assert rows[0][0] == 0


def test_a_read_does_not_wait_for_a_lock_on_its_tenants_row(
    server: ServerThread, new_tenant: Callable[[], Tenant]
) -> None:
    """A key rotation holds its tenant's row FOR UPDATE through its rewrapping; the hold's
    referential check (KEY SHARE) waited for it, so every read of the tenant stalled."""
    tenant = new_tenant()
    key = _written(server, tenant, "during-rotation")

    async def read_while_locked() -> int:
        conn = await asyncpg.connect(server.database_url)
        try:
            async with conn.transaction():
                await conn.execute("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", tenant.id)
                with httpx.Client(base_url=server.base_url, timeout=10) as http:
                    answer = await asyncio.to_thread(
                        http.get, record_url("holder-during-rotation", "during-rotation"),
                        headers=auth(key),
                    )  # fmt: skip
                return answer.status_code
        finally:
            await conn.close()

    assert asyncio.run(read_while_locked()) == 200
