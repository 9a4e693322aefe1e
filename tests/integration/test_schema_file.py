"""vault/db/schema.sql is the schema all migrations build: a fresh database with every
migration applied dumps to exactly the committed file, and a schema that drifts from it
(a column, a grant, a policy) is caught. `make schema` rewrites the file."""

from __future__ import annotations

import asyncio
import difflib

import asyncpg
import pytest

from tests.schema_dump import (
    POSTGRES_MAJOR,
    SCHEMA_FILE,
    dump_schema,
    migrated_schema,
    normalise,
    server_major_version,
)
from tests.support import new_database


@pytest.fixture(scope="module")
def postgres(pg_admin_url: str) -> str:
    major = server_major_version(pg_admin_url)
    if major != POSTGRES_MAJOR:
        pytest.skip(f"schema.sql is PostgreSQL {POSTGRES_MAJOR}'s dump; this server is {major}")
    return pg_admin_url


def _diff(expected: str, actual: str) -> str:
    lines = difflib.unified_diff(
        expected.splitlines(), actual.splitlines(), "schema.sql", "migrated", lineterm="", n=2
    )
    return "\n".join(list(lines)[:80])


def test_all_migrations_applied_give_the_committed_schema(postgres: str) -> None:
    committed = SCHEMA_FILE.read_text()
    migrated = migrated_schema(postgres)
    assert migrated == committed, (
        "vault/db/schema.sql is not what the migrations build; run `make schema` and "
        f"commit it:\n{_diff(committed, migrated)}"
    )


def _execute(url: str, statement: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.mark.parametrize(
    ("change", "seen"),
    [
        ("ALTER TABLE erasures ADD COLUMN note text", "note text"),
        ("GRANT DELETE ON access_log TO datavault_app", "DELETE"),
        ("ALTER TABLE holds DISABLE ROW LEVEL SECURITY", "ROW LEVEL SECURITY"),
    ],
)
def test_a_schema_changed_outside_the_migrations_differs(
    postgres: str, change: str, seen: str
) -> None:
    url = new_database(postgres)
    _execute(url, change)
    difference = _diff(SCHEMA_FILE.read_text(), dump_schema(url))
    assert difference, change
    assert seen in difference


def test_normalising_keeps_the_schema_and_drops_what_differs_between_dumps() -> None:
    def dump(key: str, migrator: str, version: str) -> str:
        return "\n".join([
            "--", "-- PostgreSQL database dump", "--", "", f"\\restrict {key}", "",
            f"-- Dumped from database version {version}",
            f"-- Dumped by pg_dump version {version}", "",
            "SET statement_timeout = 0;", "SELECT pg_catalog.set_config('search_path', '', false);",
            "", f"-- Name: t; Type: TABLE; Schema: public; Owner: {migrator}", "",
            "CREATE TABLE public.t (", "    id uuid NOT NULL", ");", "", "",
            f"ALTER TABLE public.t OWNER TO {migrator};",
            "ALTER FUNCTION public.f() OWNER TO datavault_definer;",
            "GRANT SELECT ON TABLE public.t TO datavault_app;", f"\\unrestrict {key}", "",
        ])  # fmt: skip

    one = normalise(dump("abc", "postgres", "18.6"), "postgres")
    other = normalise(dump("xyz", "vault_owner", "18.7"), "vault_owner")
    assert one == other
    assert "CREATE TABLE public.t (\n    id uuid NOT NULL\n);" in one
    assert "OWNER TO datavault_definer;" in one  # a role the migrations chose stays
    assert "GRANT SELECT ON TABLE public.t TO datavault_app;" in one
    for gone in ("restrict", "postgres;", "Owner: postgres", "18.6", "SET ", "set_config"):
        assert gone not in one, gone
