"""Old backups open nothing that was deleted one object at a time: a record replaced, an
artefact deleted and one expired by retention, after a new root-key epoch and the old
epoch's retirement. The thief holds a pg_dump from before, and everything the live vault
holds today (today's subject keys, KEKs and root key): the backup's data keys do not
open under today's subject keys, because the epoch gave every subject key new bytes and
rewrapped only the live data keys. Live data still reads."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from crypto.errors import IntegrityError
from crypto.keywrap import unwrap_key
from tests.api.helpers import auth, create_key, put_record, record_url, subject_url, upload
from tests.jobs import run_worker_pass
from tests.support import ServerThread, empty_database, make_tenant, private_server
from vault.db.embedded import postgres_bin_dir
from vault.runtime import operator_context
from vault.services.keyring import data_key_context
from vault.services.root_epochs import retire_epoch, start_new_epoch

PG_BIN = postgres_bin_dir()


@pytest.fixture
def vault(pg_admin_url: str, tmp_path: Path) -> Iterator[ServerThread]:
    # Backup retention 0: the old epoch may retire at once.
    with private_server(pg_admin_url, tmp_path / "data", backup_retention_days=0) as server:
        yield server


async def _rows(url: str, query: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(url)  # the owner: a thief with a raw copy sees it all
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


_BACKUP_KEYS = """
SELECT d.id, d.wrapped_key, k.id AS subject_key_id, k.subject_id, k.category, k.generation
  FROM data_keys d JOIN subject_keys k ON k.tenant_id = d.tenant_id AND k.id = d.subject_key_id
 WHERE d.tenant_id = $1 AND d.id = ANY($2::uuid[])"""


def _opens_with_todays_keys(vault: ServerThread, tenant_id: uuid.UUID, backup: list[Any]) -> int:
    """How many of the backup's wrapped data keys open under the live vault's subject key
    of the same row (today's KEK, today's root key)."""

    async def run() -> int:
        opened = 0
        async with (
            operator_context(vault.settings, vault.database_url) as ctx,
            ctx.db.tenant_tx(tenant_id) as conn,
        ):
            for row in backup:
                ref, subject_key = await ctx.keyring.subject_key(
                    conn, tenant_id, row["subject_key_id"]
                )
                context = data_key_context(ref, row["id"])
                try:
                    unwrap_key(subject_key, bytes(row["wrapped_key"]), context)
                except IntegrityError:
                    continue
                opened += 1
        return opened

    return asyncio.run(run())


def _epoch_and_retire(vault: ServerThread) -> None:
    async def run() -> None:
        async with operator_context(vault.settings, vault.database_url) as ctx:
            report = await start_new_epoch(ctx.db, ctx.keyring, ctx.root, propagation_seconds=0)
            await retire_epoch(ctx.db, ctx.root, report.epoch - 1, backup_retention_days=0)

    asyncio.run(run())


def test_replaced_deleted_and_expired_objects_stay_unreadable_in_an_old_backup(
    vault: ServerThread, pg_admin_url: str, tmp_path: Path
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        assert put_record(http, app, "ola", "profile", b'{"v": "old"}').status_code == 201
        deleted = upload(http, app, "ola", b"deleted call", "transcript").json()
        expired = upload(http, app, "ola", b"expired call", "recording").json()
        keeper = upload(http, app, "ola", b"kept notes", "support").json()
        dump = tmp_path / "before.dump"
        subprocess.run(
            [str(PG_BIN / "pg_dump"), "-Fc", "-f", str(dump), "-d", vault.database_url],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        assert put_record(http, app, "ola", "profile", b'{"v": "new"}').status_code == 200
        gone = http.delete(subject_url("ola", "artefacts", deleted["id"]), headers=auth(app))
        run_worker_pass(vault, days=91)  # recordings expire after 90 days
        _epoch_and_retire(vault)
        record_now = http.get(record_url("ola", "profile"), headers=auth(app))
        notes = http.get(
            subject_url("ola", "artefacts", keeper["id"], "content"), headers=auth(app)
        )
    assert gone.status_code == 204
    assert record_now.status_code == 200 and record_now.json() == {"v": "new"}
    assert notes.status_code == 200 and notes.content == b"kept notes"

    restored = empty_database(pg_admin_url)
    subprocess.run(
        [str(PG_BIN / "pg_restore"), "-d", restored, str(dump)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    old = asyncio.run(
        _rows(restored, "SELECT data_key_id FROM records WHERE tenant_id = $1 AND version = 1",
              tenant.id)
    )  # fmt: skip
    artefact_keys = asyncio.run(
        _rows(restored, "SELECT data_key_id FROM artefacts WHERE tenant_id = $1 AND id = ANY($2)",
              tenant.id, [uuid.UUID(deleted["id"]), uuid.UUID(expired["id"])])
    )  # fmt: skip
    wanted = [r["data_key_id"] for r in old + artefact_keys]
    backup = asyncio.run(_rows(restored, _BACKUP_KEYS, tenant.id, wanted))
    assert len(backup) == 3 and all(r["wrapped_key"] is not None for r in backup)
    assert _opens_with_todays_keys(vault, tenant.id, backup) == 0


def test_the_old_backup_opened_before_the_epoch(
    vault: ServerThread, pg_admin_url: str, tmp_path: Path
) -> None:
    """The control: without a new epoch, a replaced record's data key in the backup does
    open under the live subject key. This is what the epoch closes."""
    tenant = make_tenant(vault.settings, vault.database_url)
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        assert put_record(http, app, "max", "profile", b'{"v": "old"}').status_code == 201
        dump = tmp_path / "before.dump"
        subprocess.run(
            [str(PG_BIN / "pg_dump"), "-Fc", "-f", str(dump), "-d", vault.database_url],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        assert put_record(http, app, "max", "profile", b'{"v": "new"}').status_code == 200
    restored = empty_database(pg_admin_url)
    subprocess.run(
        [str(PG_BIN / "pg_restore"), "-d", restored, str(dump)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    old = asyncio.run(
        _rows(restored, "SELECT data_key_id, value_sealed FROM records WHERE tenant_id = $1",
              tenant.id)
    )  # fmt: skip
    backup = asyncio.run(_rows(restored, _BACKUP_KEYS, tenant.id, [old[0]["data_key_id"]]))
    assert _opens_with_todays_keys(vault, tenant.id, backup) == 1
