from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.support import empty_database, new_database
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


def test_migration_files_are_numbered_without_gaps() -> None:
    versions = [m.version for m in available_migrations()]
    assert versions == list(range(1, len(versions) + 1))


def _migrate_command(url: str, data_dir: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAVAULT_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "vault", "migrate", "--database-url", url,
         "--data-dir", str(data_dir), *flags],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_migrate_command_builds_a_fresh_database_then_is_idempotent(
    pg_admin_url: str, tmp_path: Path
) -> None:
    url = empty_database(pg_admin_url)
    everything = [f"{m.version:04d}_{m.name}" for m in available_migrations()]

    first = _migrate_command(url, tmp_path / "data", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"applied": everything}

    again = _migrate_command(url, tmp_path / "data", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"applied": []}
    text = _migrate_command(url, tmp_path / "data")
    assert (text.returncode, text.stdout.strip()) == (0, "up to date")

    async def versions() -> list[int]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")
        finally:
            await conn.close()
        return [r["version"] for r in rows]

    assert asyncio.run(versions()) == [m.version for m in available_migrations()]
