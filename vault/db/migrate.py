"""`datavault migrate`: plain SQL files in migrations/, applied once each, in order.

A migration that has landed is never edited: its SHA-256 is recorded when applied and a
changed file stops the vault from starting.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from dataclasses import dataclass
from importlib import resources

import asyncpg

from vault.db.database import CONNECTION_ERRORS
from vault.errors import Unavailable

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Serialises concurrent migrators (serve and `datavault migrate` started together).
_ADVISORY_LOCK = 0x64617461_7661756C  # "datavaul"

# A migration on a live vault's database waits for its locks at most this long at a
# time: a lock request queued behind a long transaction holds back every later statement
# on that table (an ALTER TABLE on `tenants` would stall every request), so it gives way
# and is tried again, whole, until MIGRATION_LOCK_PATIENCE_SECONDS have passed (red team
# 18).
MIGRATION_LOCK_TIMEOUT_MS = 500
MIGRATION_LOCK_PATIENCE_SECONDS = 300.0
_RETRY_PAUSE_SECONDS = 0.2


class MigrationError(RuntimeError):
    """The database's migration history does not match the files."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("vault.db.migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration numbers must run 1..n without gaps: {versions}")
    return found


async def migrate(url: str) -> list[Migration]:
    """Apply every pending migration; return the ones applied now."""
    try:
        conn = await asyncpg.connect(url)
    except CONNECTION_ERRORS as exc:
        raise Unavailable("database unreachable") from exc
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _ADVISORY_LOCK)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        applied = {
            row["version"]: row["checksum"]
            for row in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        done = []
        for migration in available_migrations():
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was changed "
                        "after it was applied; add a new migration instead"
                    )
                continue
            await _apply(conn, migration)
            done.append(migration)
        unknown = set(applied) - {m.version for m in available_migrations()}
        if unknown:
            raise MigrationError(f"database has migrations this version does not know: {unknown}")
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _ADVISORY_LOCK)
        await conn.close()


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    """One migration in one transaction, given up and tried again whole whenever a lock it
    needs is not granted within MIGRATION_LOCK_TIMEOUT_MS."""
    gives_up_at = time.monotonic() + MIGRATION_LOCK_PATIENCE_SECONDS
    while True:
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = {MIGRATION_LOCK_TIMEOUT_MS}")
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            return
        except asyncpg.LockNotAvailableError as exc:
            if time.monotonic() >= gives_up_at:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} could not take its "
                    f"locks in {MIGRATION_LOCK_PATIENCE_SECONDS:.0f} s: a long transaction "
                    "holds them; run `datavault migrate` again once it has ended"
                ) from exc
            await asyncio.sleep(_RETRY_PAUSE_SECONDS)
