from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.support import new_database
from vault.db.migrate import MigrationError, available_migrations, migrate


def test_migrate_applies_every_file_once_then_is_a_no_op(pg_admin_url: str) -> None:
    url = new_database(pg_admin_url)  # applies everything

    async def versions() -> list[int]:
        conn = await asyncpg.connect(url)
        try:
            return [
                r["version"]
                for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")
            ]
        finally:
            await conn.close()

    assert asyncio.run(versions()) == [m.version for m in available_migrations()]
    assert asyncio.run(migrate(url)) == []


def test_an_edited_migration_stops_migrate(pg_admin_url: str) -> None:
    url = new_database(pg_admin_url)

    async def tamper() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        finally:
            await conn.close()

    asyncio.run(tamper())
    with pytest.raises(MigrationError, match="changed after it was applied"):
        asyncio.run(migrate(url))


def test_migration_files_are_numbered_uniquely_from_1_in_order() -> None:
    versions = [m.version for m in available_migrations()]
    assert versions[0] == 1
    assert versions == sorted(set(versions))
