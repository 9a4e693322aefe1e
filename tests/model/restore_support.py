"""The vault the restore model drives (tests/model/test_restore_model.py): one server on a
database of its own per example, which the machine backs up with `pg_dump` while it
serves and restores as docs/runbook.md "Restoring a backup" says: stop the vault, restore
the dump into the database DATABASE_URL names (the blob store, with the shred ledger and
the root key's `.ledger-head`, is left as it is), start the vault, whose start-up replays
the ledger before it serves.

Switches (environment), for a longer hunt than CI's 5 examples of up to 20 steps:
DATAVAULT_MODEL_RESTORE_EXAMPLES, DATAVAULT_MODEL_RESTORE_STEPS; the seed is the deletion
model's DATAVAULT_MODEL_SEED.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import urllib.parse
from pathlib import Path

import asyncpg

from tests.model.support import ModelVault
from tests.support import ServerThread, new_database, with_database
from vault.config import Settings
from vault.db.embedded import postgres_bin_dir
from vault.runtime import operator_context
from vault.services.erasure_receipts import ReceiptIssuer
from vault.services.ledger_watermark import watermark_for
from workers.ledger import publish_and_complete

EXAMPLES = int(os.environ.get("DATAVAULT_MODEL_RESTORE_EXAMPLES", "5"))
STEPS = int(os.environ.get("DATAVAULT_MODEL_RESTORE_STEPS", "20"))
HUNTING = any(os.environ.get(f"DATAVAULT_MODEL_RESTORE_{name}") for name in ("EXAMPLES", "STEPS"))
MAX_BACKUPS = 3  # per example
MAX_RESTORES = 2  # per example: each costs a stop, a pg_restore and a start (~2 s)
PG_BIN = postgres_bin_dir()


def _pg(tool: str, *args: str) -> None:
    subprocess.run([str(PG_BIN / tool), *args], check=True, capture_output=True, timeout=120)


def _database_name(url: str) -> str:
    return urllib.parse.urlsplit(url).path.lstrip("/")


def _admin(pg_admin_url: str, *statements: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(pg_admin_url)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def publisher_round(server: ServerThread) -> None:
    """The shred-ledger publisher's round, as a deployment's runs every few seconds (the
    model's vault runs no jobs): publishes what is pending, completes what it can."""

    async def run() -> None:
        async with operator_context(server.settings, server.database_url) as ctx:
            issuer = await ReceiptIssuer.for_deployment(ctx.db, ctx.root, ctx.settings)
            await publish_and_complete(
                ctx.db, ctx.blobs, issuer, watermark_for(ctx.root, ctx.blobs)
            )

    asyncio.run(run())


class RestorableVault:
    """One example's vault: started on a fresh database, backed up, restored, dropped."""

    def __init__(self, pg_admin_url: str, data_dir: Path, dumps: Path) -> None:
        self._pg_admin_url = pg_admin_url
        self._dumps = dumps
        self.database_url = new_database(pg_admin_url)
        self._settings = Settings(data_dir=data_dir, database_url=self.database_url)
        self._server = self._start()
        self.backups_taken = 0

    def _start(self) -> ServerThread:
        return ServerThread(self._settings, self.database_url, run_jobs=False).start()

    @property
    def current(self) -> ModelVault:
        return ModelVault(self._server)

    def take_backup(self) -> Path:
        """`pg_dump -Fc` of the database while the vault serves (a live backup)."""
        self.backups_taken += 1
        dump = self._dumps / f"backup-{self.backups_taken}.dump"
        _pg("pg_dump", "-Fc", "-f", str(dump), "-d", self.database_url)
        return dump

    def restore(self, dump: Path) -> ModelVault:
        """Stop the vault; the publisher's last round on the database about to be lost
        (what a deployment's publisher had done by then); the dump into a recreated
        database of the same name; start the vault (start-up replays the ledger); one
        publisher round (the restored vault's jobs would run it within seconds)."""
        self._server.stop()
        publisher_round(self._server)
        name = _database_name(self.database_url)
        _admin(
            self._pg_admin_url,
            f'DROP DATABASE "{name}" WITH (FORCE)',
            f'CREATE DATABASE "{name}"',
        )
        _pg("pg_restore", "-d", with_database(self._pg_admin_url, name), str(dump))
        self._server = self._start()
        publisher_round(self._server)
        return self.current

    def close(self) -> None:
        self._server.stop()
        _admin(
            self._pg_admin_url,
            f'DROP DATABASE IF EXISTS "{_database_name(self.database_url)}" WITH (FORCE)',
        )
