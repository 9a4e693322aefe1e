"""Red team 21: `datavault migrate`'s lock_timeout and retry (vault/db/migrate.py _apply)
attacked: a long migration that waits for no lock, a lock wait behind steady short
traffic, and a migration that is not idempotent. What held (regression tests)."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from tests.support import new_database
from vault.db import migrate as migrate_module
from vault.db.migrate import Migration, available_migrations, migrate


def _with_extra(monkeypatch: pytest.MonkeyPatch, sql: str) -> None:
    """The real migrations and one more after them (not a file: this test's own)."""
    real = available_migrations()
    extra = Migration(real[-1].version + 1, "rt21_extra", sql)
    monkeypatch.setattr(migrate_module, "available_migrations", lambda: [*real, extra])


def test_held_a_migration_busy_longer_than_the_lock_timeout_is_not_retried(
    pg_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lock_timeout counts lock waits only: a migration that computes for 1.2 s (more
    than MIGRATION_LOCK_TIMEOUT_MS) with nothing in its way runs once and applies. Its
    side effect (a sequence's nextval, which no rollback undoes) shows it ran once."""
    url = new_database(pg_admin_url)
    _with_extra(
        monkeypatch,
        "CREATE SEQUENCE IF NOT EXISTS rt21_runs;"
        "SELECT nextval('rt21_runs'), pg_sleep(1.2);"
        "CREATE TABLE rt21_slow (id integer);",
    )
    assert migrate_module.MIGRATION_LOCK_TIMEOUT_MS < 1200

    async def run() -> None:
        applied = await migrate(url)
        assert [m.name for m in applied] == ["rt21_extra"]
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT last_value FROM rt21_runs") == 1
            # and nothing of the SET LOCAL outlived the migration's transaction
            assert await conn.fetchval("SHOW lock_timeout") == "0"
        finally:
            await conn.close()

    asyncio.run(run())


def test_held_a_migration_gets_its_lock_under_steady_overlapping_short_transactions(
    pg_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """There is always some transaction reading tenants (four connections, each a 150 ms
    transaction after another): the ALTER's queued ACCESS EXCLUSIVE holds the new ones
    back, the old ones end within its 500 ms, and it applies on its first tries, not
    retried until its patience runs out."""
    url = new_database(pg_admin_url)
    _with_extra(monkeypatch, "ALTER TABLE tenants ADD COLUMN rt21_extra integer;")

    async def traffic(stop: asyncio.Event) -> int:
        conn = await asyncpg.connect(url)
        done = 0
        try:
            while not stop.is_set():
                async with conn.transaction():
                    await conn.fetch("SELECT id FROM tenants LIMIT 1")
                    await asyncio.sleep(0.15)
                done += 1
        finally:
            await conn.close()
        return done

    async def run() -> float:
        stop = asyncio.Event()
        readers = [asyncio.create_task(traffic(stop)) for _ in range(4)]
        await asyncio.sleep(0.4)
        started = time.monotonic()
        try:
            applied = await asyncio.wait_for(migrate(url), 10)
        finally:
            stop.set()
            counts = await asyncio.gather(*readers)
        assert [m.name for m in applied] == ["rt21_extra"]
        assert all(counts)
        return time.monotonic() - started

    assert asyncio.run(run()) < 3.0


def test_held_a_non_idempotent_migration_retried_is_applied_once(
    pg_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration that inserts a row, then needs a lock another transaction holds for
    1.5 s: each try that gives way is rolled back whole, so the row is there once."""
    url = new_database(pg_admin_url)
    _with_extra(
        monkeypatch,
        "CREATE TABLE rt21_once (id serial PRIMARY KEY);"
        "INSERT INTO rt21_once DEFAULT VALUES;"
        "ALTER TABLE tenants ADD COLUMN rt21_once integer;",
    )

    async def run() -> None:
        blocker = await asyncpg.connect(url)
        try:
            await blocker.execute("BEGIN")
            await blocker.fetch("SELECT id FROM tenants LIMIT 1")
            migrating = asyncio.create_task(migrate(url))
            await asyncio.sleep(1.5)
            assert not migrating.done()
            await blocker.execute("ROLLBACK")
            await asyncio.wait_for(migrating, 10)
        finally:
            await blocker.close()
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM rt21_once") == 1
        finally:
            await conn.close()

    asyncio.run(run())
