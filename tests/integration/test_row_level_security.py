"""Row-level security: a transaction sees only the tenant it set, and nothing without one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import asyncpg
import pytest

from tests.api.helpers import auth, create_key, data_keys, put_record, subject_url, uploaded
from tests.support import ServerThread, Tenant
from vault.db.database import APP_ROLE, Database

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


def test_request_role_in_a_tenant_transaction_is_neither_owner_nor_bypassing(
    database_url: str, tenant: Tenant
) -> None:
    # The URL's own role owns the tables (or is a superuser); requests must not run as it.
    tables = _tenant_tables(database_url)

    async def check() -> asyncpg.Record | None:
        db = await Database.connect(database_url, max_size=1)
        try:
            async with db.tenant_tx(tenant.id) as conn:
                return await conn.fetchrow(
                    """SELECT current_user AS who, session_user AS session,
                              current_setting('datavault.tenant_id') AS tenant,
                              r.rolsuper, r.rolbypassrls,
                              (SELECT bool_or(pg_has_role(current_user, c.relowner, 'USAGE'))
                                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                WHERE n.nspname = 'public' AND c.relname = ANY($1::text[]))
                                AS owns_any
                         FROM pg_roles r WHERE r.rolname = current_user""",
                    tables,
                )
        finally:
            await db.close()

    row = asyncio.run(check())
    assert row is not None
    assert (row["who"], row["tenant"]) == (APP_ROLE, str(tenant.id))
    assert row["session"] != APP_ROLE  # the switch happened: the URL's role is another one
    assert not row["rolsuper"] and not row["rolbypassrls"]
    # Neither the owner of any tenant table nor a member of the role that owns one.
    assert row["owns_any"] is False


# --- the catalog: every tenant table is under row-level security ------------------------

_TENANT_SETTING = "current_setting('datavault.tenant_id'::text, true)"


def _catalog(database_url: str) -> list[asyncpg.Record]:
    """Each table of the public schema with a tenant_id column, and `tenants` itself: its
    RLS flags and the USING / WITH CHECK of every policy that applies to the request role
    (by name or through PUBLIC)."""

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database_url)
        try:
            return list(
                await conn.fetch(
                    """SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                              coalesce(array_agg(p.polcmd::text ORDER BY p.polname)
                                FILTER (WHERE p.polname IS NOT NULL), '{}') AS commands,
                              coalesce(array_agg(coalesce(pg_get_expr(p.polqual, p.polrelid), '')
                                ORDER BY p.polname) FILTER (WHERE p.polname IS NOT NULL), '{}')
                                AS using_exprs,
                              coalesce(array_agg(coalesce(pg_get_expr(p.polwithcheck, p.polrelid),
                                '') ORDER BY p.polname) FILTER (WHERE p.polname IS NOT NULL),
                                '{}') AS check_exprs
                         FROM pg_class c
                         JOIN pg_namespace n ON n.oid = c.relnamespace
                         LEFT JOIN pg_policy p ON p.polrelid = c.oid
                              AND (p.polroles @> ARRAY[0::oid]
                                   OR p.polroles @> ARRAY[(SELECT oid FROM pg_roles
                                                           WHERE rolname = $1)])
                        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
                          AND (c.relname = 'tenants' OR EXISTS (
                                SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                                   AND a.attname = 'tenant_id' AND NOT a.attisdropped))
                        GROUP BY c.relname, c.relrowsecurity, c.relforcerowsecurity
                        ORDER BY c.relname""",
                    APP_ROLE,
                )
            )
        finally:
            await conn.close()

    return asyncio.run(run())


def _tenant_tables(database_url: str) -> list[str]:
    return [row["relname"] for row in _catalog(database_url)]


# The tables that hold a tenant's data; the catalog must find them (and the test below
# fills each of them).
DATA_TABLES = [
    "subjects", "records", "artefacts", "data_keys", "subject_keys", "holds", "erasures",
    "access_log", "disclosures",
]  # fmt: skip


def test_every_tenant_table_forces_row_level_security_with_a_tenant_policy(
    database_url: str,
) -> None:
    catalog = _catalog(database_url)
    found = {row["relname"] for row in catalog}
    assert {"tenants", *TENANT_TABLES, *DATA_TABLES} <= found
    for row in catalog:
        table = row["relname"]
        assert row["relrowsecurity"], f"{table}: row-level security is not enabled"
        assert row["relforcerowsecurity"], f"{table}: not FORCE ROW LEVEL SECURITY"
        assert row["commands"], f"{table}: no policy for {APP_ROLE}"
        # Policies combine with OR: every one the request role gets must be bound to the
        # transaction's tenant, or it opens the table (as `USING (true)` would).
        for command, using, check in zip(
            row["commands"], row["using_exprs"], row["check_exprs"], strict=True
        ):
            assert _TENANT_SETTING in using, f"{table}: policy USING ({using})"
            if command in ("*", "a", "w"):  # ALL, INSERT, UPDATE also need WITH CHECK
                assert _TENANT_SETTING in check, f"{table}: policy WITH CHECK ({check})"


# --- a tenant's data rows are invisible without its tenant set ----------------------------


def _fill_data_tables(server: ServerThread, tenant: Tenant) -> None:
    """Through the API: a subject with an artefact and a record (subject and data keys),
    a hold on it and a disclosure under the hold, an erasure of another subject, and the
    access-log rows of all that."""
    with server.client() as http:
        keys = data_keys(http, tenant)
        ref = "rls-subject"
        uploaded(http, keys.ingest, ref, b"a call recording")
        assert put_record(http, keys.ingest, ref, "profile", b'{"plan": "pro"}').status_code == 201
        held = http.post(
            "/v1/holds",
            json={"subject_ref": ref, "reason": "billing", "reference": "rls-case"},
            headers=auth(keys.compliance),
        )
        assert held.status_code == 201, held.text
        disclosed = http.post(
            "/v1/disclosures",
            json={"hold_id": held.json()["id"], "recipient": "Rechtbank", "legal_basis": "order",
                  "reference": "rls-case", "categories": ["recording"],
                  "disclosed_at": "2024-05-01T10:00:00Z", "description": "one call"},
            headers=auth(keys.compliance),
        )  # fmt: skip
        assert disclosed.status_code == 201, disclosed.text
        privacy = create_key(http, tenant, ["erasure"])
        erased = http.post(subject_url("rls-other-subject", "erasure"), headers=auth(privacy))
        assert erased.status_code == 202, erased.text


async def _tenant_rows(url: str, owner: uuid.UUID, setting: uuid.UUID | None) -> dict[str, int]:
    """Per data table: how many of `owner`'s rows a request transaction with `setting` as
    its tenant (None: no tenant) sees."""
    db = await Database.connect(url, max_size=1)
    try:
        counts = {}
        for table in DATA_TABLES:
            query = f"SELECT count(*) FROM {table} WHERE tenant_id = $1"
            if setting is None:
                async with db.untenanted_tx() as conn:
                    counts[table] = int(await conn.fetchval(query, owner))
            else:
                async with db.tenant_tx(setting) as conn:
                    counts[table] = int(await conn.fetchval(query, owner))
        return counts
    finally:
        await db.close()


def test_tenant_data_rows_are_invisible_without_the_tenant_or_with_another(
    server: ServerThread, database_url: str, new_tenant: Callable[[], Tenant]
) -> None:
    owner, other = new_tenant(), new_tenant()
    _fill_data_tables(server, owner)
    seen_by_owner = asyncio.run(_tenant_rows(database_url, owner.id, owner.id))
    # Positive: every table really holds rows of the owner (else the zeros prove nothing).
    assert [t for t, n in seen_by_owner.items() if n == 0] == []
    nobody = {table: 0 for table in DATA_TABLES}
    assert asyncio.run(_tenant_rows(database_url, owner.id, None)) == nobody
    assert asyncio.run(_tenant_rows(database_url, owner.id, other.id)) == nobody
    assert asyncio.run(_tenant_rows(database_url, owner.id, uuid.uuid4())) == nobody


@pytest.mark.parametrize(
    "statements",
    [
        ("DELETE FROM access_log", "UPDATE access_log SET status = 200"),
        ("DELETE FROM disclosures", "UPDATE disclosures SET recipient = 'nobody'",
         "DELETE FROM disclosure_heads"),
    ],
    ids=["access_log", "disclosures"],
)  # fmt: skip
def test_the_evidence_is_append_only_for_the_app(
    database_url: str, tenant: Tenant, statements: tuple[str, ...]
) -> None:
    async def attempt(statement: str) -> None:
        db = await Database.connect(database_url, max_size=1)
        try:
            async with db.tenant_tx(tenant.id) as conn:
                await conn.execute(statement)
        finally:
            await db.close()

    for statement in statements:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            asyncio.run(attempt(statement))


def test_disclosures_refuse_changes_from_the_owner_too(
    server: ServerThread, database_url: str, tenant: Tenant
) -> None:
    """A trigger, beside the missing privileges: a mistaken statement run as the owner
    (a migration, a console session) cannot change or remove an entry either. (The
    owner can drop the trigger; `datavault audit verify` finds what was done then.)"""
    _fill_data_tables(server, tenant)

    async def attempt(statement: str) -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(statement, tenant.id)
        finally:
            await conn.close()

    for statement in (
        "UPDATE disclosures SET recipient = 'nobody' WHERE tenant_id = $1",
        "DELETE FROM disclosures WHERE tenant_id = $1",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
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
