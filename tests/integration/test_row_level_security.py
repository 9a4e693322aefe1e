"""Row-level security: a transaction sees only the tenant it set, and nothing without one."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from tests.support import Tenant
from vault.db.database import Database

TENANT_TABLES = ["tenants", "tenant_keks", "api_keys", "access_log", "access_log_heads"]


async def _count_as_app(url: str, table: str, tenant_setting: str | None) -> int:
    db = await Database.connect(url, max_size=1)
    try:
        if tenant_setting is None:
            async with db.untenanted_tx() as conn:
                return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
        async with db.tenant_tx(uuid.UUID(tenant_setting)) as conn:
            return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await db.close()


def test_own_tenant_sees_its_rows(database_url: str, tenant: Tenant) -> None:
    assert asyncio.run(_count_as_app(database_url, "api_keys", str(tenant.id))) == 1
    assert asyncio.run(_count_as_app(database_url, "tenants", str(tenant.id))) == 1
    assert asyncio.run(_count_as_app(database_url, "tenant_keks", str(tenant.id))) == 1


@pytest.mark.parametrize("table", TENANT_TABLES)
def test_query_without_tenant_sees_no_rows(database_url: str, tenant: Tenant, table: str) -> None:
    assert asyncio.run(_count_as_app(database_url, table, None)) == 0


@pytest.mark.parametrize("table", ["tenants", "tenant_keks", "api_keys"])
def test_query_as_other_tenant_sees_none_of_its_rows(
    database_url: str, tenant: Tenant, table: str
) -> None:
    other = str(uuid.uuid4())
    assert asyncio.run(_count_as_app(database_url, table, other)) == 0


def test_insert_for_another_tenant_is_refused(database_url: str, tenant: Tenant) -> None:
    async def attempt() -> None:
        db = await Database.connect(database_url, max_size=1)
        try:
            async with db.tenant_tx(uuid.uuid4()) as conn:
                await conn.execute(
                    "INSERT INTO api_keys (id, tenant_id, prefix, name, key_hash, scopes)"
                    " VALUES ($1, $2, 'zzzzzzzzzzzz', 'x', '\\x00', '{admin}')",
                    uuid.uuid4(),
                    tenant.id,
                )
        finally:
            await db.close()

    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        asyncio.run(attempt())


def test_app_role_is_neither_owner_nor_bypassing(database_url: str) -> None:
    async def check() -> asyncpg.Record:
        db = await Database.connect(database_url, max_size=1)
        try:
            async with db.untenanted_tx() as conn:
                return await conn.fetchrow(
                    """SELECT current_user AS who, r.rolsuper, r.rolbypassrls,
                              (SELECT bool_or(c.relowner = r.oid) FROM pg_class c
                                WHERE c.relname = ANY($1::text[])) AS owns_any,
                              (SELECT bool_and(c.relforcerowsecurity AND c.relrowsecurity)
                                 FROM pg_class c WHERE c.relname = ANY($1::text[])) AS forced
                         FROM pg_roles r WHERE r.rolname = current_user""",
                    TENANT_TABLES,
                )
        finally:
            await db.close()

    row = asyncio.run(check())
    assert row["who"] == "datavault_app"
    assert not row["rolsuper"] and not row["rolbypassrls"]
    assert not row["owns_any"]
    assert row["forced"]


def test_access_log_is_append_only_for_the_app(database_url: str, tenant: Tenant) -> None:
    async def attempt(statement: str) -> None:
        db = await Database.connect(database_url, max_size=1)
        try:
            async with db.tenant_tx(tenant.id) as conn:
                await conn.execute(statement)
        finally:
            await db.close()

    for statement in ("DELETE FROM access_log", "UPDATE access_log SET status = 200"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            asyncio.run(attempt(statement))


@pytest.mark.parametrize("ends", ["commit", "rollback"])
def test_pooled_connection_keeps_no_tenant_from_its_last_transaction(
    database_url: str, tenant: Tenant, ends: str
) -> None:
    """Connections go back to the pool without a reset round trip; the next user of the
    same connection still runs as the application role with no tenant."""

    async def after_a_tenant_transaction() -> asyncpg.Record | None:
        db = await Database.connect(database_url, max_size=1)
        try:
            try:
                async with db.tenant_tx(tenant.id) as conn:
                    assert await conn.fetchval("SELECT count(*) FROM api_keys") == 1
                    if ends == "rollback":
                        raise LookupError("leave the transaction by an error")
            except LookupError:
                pass
            return await db.untenanted_fetchrow(
                "SELECT current_user AS role,"
                " coalesce(current_setting('datavault.tenant_id', true), '') AS tenant,"
                " (SELECT count(*) FROM api_keys) AS keys"
            )
        finally:
            await db.close()

    row = asyncio.run(after_a_tenant_transaction())
    assert row is not None
    assert (row["role"], row["tenant"], row["keys"]) == ("datavault_app", "", 0)
