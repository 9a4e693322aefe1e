"""Red team 18: migration 0045 applied to a live vault's database.

`ALTER TABLE transfer_keys DROP CONSTRAINT transfer_keys_tenant_id_fkey` takes ACCESS
EXCLUSIVE on transfer_keys and on the table it referenced, tenants (the constraint's
triggers live on both). `datavault migrate` sets no lock_timeout, so the ALTER waits for
every open transaction that has read either table (a closure pass holding its tenant's
row while it destroys keys, a rotation's first transaction, any request's transaction),
and every later statement on tenants (each authenticated request reads its tenant) or
transfer_keys (each held read) queues behind it: the vault's reads stall for as long as
the longest such transaction lasts.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from tests.support import new_database
from vault.db import migrate as migrate_module
from vault.db.migrate import MigrationError, migrate

READ_WAITS_AT_MOST = 1.0  # seconds a request's read of its tenant may wait on migrate


async def _back_to_0044(url: str) -> None:
    """The database as migration 0044 left it (new_database applied everything)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "ALTER TABLE transfer_keys ADD CONSTRAINT transfer_keys_tenant_id_fkey"
            " FOREIGN KEY (tenant_id) REFERENCES tenants (id)"
        )
        await conn.execute("DELETE FROM schema_migrations WHERE version = 45")
    finally:
        await conn.close()


async def _read_stalled_by_migrate(url: str) -> float:
    await _back_to_0044(url)
    open_transaction = await asyncpg.connect(url)
    reader = await asyncpg.connect(url)
    try:
        # A transaction that has read tenants and is still open (what a closure pass or
        # a rotation's first transaction is while it runs).
        await open_transaction.execute("BEGIN")
        await open_transaction.fetch("SELECT id FROM tenants LIMIT 1")
        migrating = asyncio.create_task(migrate(url))
        await asyncio.sleep(0.3)  # the ALTER is queued for its lock by now
        assert not migrating.done()
        started = time.monotonic()
        reading = asyncio.create_task(reader.fetch("SELECT id, settings FROM tenants LIMIT 1"))
        done, _ = await asyncio.wait({reading}, timeout=READ_WAITS_AT_MOST + 0.5)
        waited = time.monotonic() - started
        await open_transaction.execute("ROLLBACK")
        applied = await asyncio.wait_for(migrating, 10)
        assert [m.version for m in applied] == [45]
        await asyncio.wait_for(reading, 10)
        return waited if done else float("inf")
    finally:
        await open_transaction.close()
        await reader.close()


def test_migration_0045_does_not_stall_reads_behind_an_open_transaction(
    pg_admin_url: str,
) -> None:
    url = new_database(pg_admin_url)
    assert asyncio.run(_read_stalled_by_migrate(url)) <= READ_WAITS_AT_MOST


def test_a_migration_whose_locks_stay_taken_gives_up_saying_why(
    pg_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its patience a migration gives up whole (nothing of it applied) and says what
    to do, rather than queueing in front of every request for as long as the other
    transaction lasts."""
    monkeypatch.setattr(migrate_module, "MIGRATION_LOCK_PATIENCE_SECONDS", 1.0)
    url = new_database(pg_admin_url)

    async def run() -> None:
        await _back_to_0044(url)
        open_transaction = await asyncpg.connect(url)
        try:
            await open_transaction.execute("BEGIN")
            await open_transaction.fetch("SELECT id FROM tenants LIMIT 1")
            started = time.monotonic()
            with pytest.raises(MigrationError, match=r"0045_.*run `datavault migrate` again"):
                await migrate(url)
            assert time.monotonic() - started < 5
            await open_transaction.execute("ROLLBACK")
        finally:
            await open_transaction.close()
        check = await asyncpg.connect(url)
        try:
            assert await check.fetchval("SELECT max(version) FROM schema_migrations") == 44
        finally:
            await check.close()
        assert [m.version for m in await migrate(url)] == [45]  # once the way is clear

    asyncio.run(run())
