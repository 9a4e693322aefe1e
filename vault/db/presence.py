"""Whether a vault exists where the settings point, found without creating anything.

Only `serve`, `migrate` and `tenant create` may create a vault (a data directory, an
embedded PostgreSQL, a schema, a root key). Every other command asks here first and stops
(exit 2) where there is none, so a typo in --data-dir or DATABASE_URL never leaves a
second, empty vault behind.
"""

from __future__ import annotations

import asyncio

import asyncpg

from vault.config import ConfigError, Settings
from vault.db.database import CONNECTION_ERRORS
from vault.errors import Unavailable

# initdb writes this file first thing; a data directory without it holds no PostgreSQL.
_CLUSTER_MARKER = "PG_VERSION"
_START_ONE = "run `datavault serve` or `datavault migrate` to create one"


class NoVault(ConfigError):
    """No vault where the settings point; the message says where was looked."""


def check_vault_location(settings: Settings) -> None:
    """Before anything starts: with the embedded default, the data directory must hold the
    vault's PostgreSQL. (With DATABASE_URL, `check_vault_schema` asks the database.)"""
    if settings.database_url:
        return
    if not (settings.data_dir / "postgres" / _CLUSTER_MARKER).is_file():
        raise NoVault(
            f"no vault in {settings.data_dir.absolute()}: {_START_ONE}, or point --data-dir "
            "(DATAVAULT_DATA_DIR) or DATABASE_URL at an existing vault"
        )


def check_vault_schema(url: str) -> None:
    """The database must hold the vault's schema (its migration history)."""
    if not asyncio.run(_has_schema(url)):
        raise NoVault(f"no vault in the database DATABASE_URL names: {_START_ONE} there")


async def _has_schema(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        return False  # the database itself does not exist
    except CONNECTION_ERRORS as exc:
        raise Unavailable("database unreachable") from exc
    try:
        if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
            return False
        return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM schema_migrations)"))
    finally:
        await conn.close()
