"""Tenant KEK rotation and root-key epochs, with reads going on throughout."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from crypto.errors import KeyUnavailableError
from tests.keys_support import insert_subject
from tests.support import make_tenant
from vault.config import Settings
from vault.errors import Conflict, UnknownEpoch
from vault.runtime import OperatorContext, operator_context
from vault.services.holds import PgHoldCheck
from vault.services.key_rotation import rotate_tenant_kek
from vault.services.keyring import DataKey, KeyRing
from vault.services.root_epochs import list_epochs, retire_epoch, start_new_epoch
from vault.services.tenants import kek_context


async def _seed(ctx: OperatorContext, tenant_id: uuid.UUID, subjects: int) -> list[DataKey]:
    keys = []
    for _ in range(subjects):
        subject = await insert_subject(ctx.db, tenant_id)
        async with ctx.db.tenant_tx(tenant_id) as conn:
            ref = await ctx.keyring.subject_key_for_write(conn, tenant_id, subject, "recording", 1)
            keys.append(await ctx.keyring.new_data_key(conn, ref, "artefact"))
    return keys


def test_rotation_rewraps_every_subject_key_then_destroys_the_old_version(
    private_vault: Settings,
) -> None:
    assert private_vault.database_url is not None
    tenant = make_tenant(private_vault, private_vault.database_url)

    async def run() -> None:
        async with operator_context(private_vault, private_vault.database_url or "") as ctx:
            keys = await _seed(ctx, tenant.id, 23)
            report = await rotate_tenant_kek(ctx.db, ctx.keyring, ctx.root, tenant.id, batch=5)
            assert (report.new_version, report.rewrapped, report.destroyed_versions) == (
                2,
                23,
                (1,),
            )
            fresh = KeyRing(ctx.root, PgHoldCheck())
            async with ctx.db.tenant_tx(tenant.id) as conn:
                versions = await conn.fetch(
                    "SELECT version, wrapped_key IS NULL AS gone FROM tenant_keks"
                )
                under = {
                    r["kek_version"]
                    for r in await conn.fetch("SELECT kek_version FROM subject_keys")
                }
                for key in keys:
                    assert (await fresh.data_key(conn, tenant.id, key.id)).key == key.key
            assert sorted((r["version"], r["gone"]) for r in versions) == [(1, True), (2, False)]
            assert under == {2}

    asyncio.run(run())


def test_reads_and_writes_keep_working_during_rotation(private_vault: Settings) -> None:
    assert private_vault.database_url is not None
    tenant = make_tenant(private_vault, private_vault.database_url)

    async def run() -> None:
        async with operator_context(private_vault, private_vault.database_url or "") as ctx:
            keys = await _seed(ctx, tenant.id, 60)
            done = asyncio.Event()
            reads, writes = 0, 0

            async def reader() -> None:
                nonlocal reads
                ring = KeyRing(ctx.root, PgHoldCheck())  # another process's view: its own cache
                while not done.is_set():
                    key = random.choice(keys)
                    async with ctx.db.tenant_tx(tenant.id) as conn:
                        assert (await ring.data_key(conn, tenant.id, key.id)).key == key.key
                    reads += 1
                    ring.keks.clear()  # force unwrapping through the database every time
                    await asyncio.sleep(0)

            async def writer() -> None:
                nonlocal writes
                ring = KeyRing(ctx.root, PgHoldCheck())
                while not done.is_set():
                    keys.append((await _seed(ctx, tenant.id, 1))[0])
                    writes += 1
                    ring.keks.clear()

            tasks = [asyncio.create_task(reader()), asyncio.create_task(writer())]
            for _ in range(3):
                await rotate_tenant_kek(ctx.db, ctx.keyring, ctx.root, tenant.id, batch=7)
            done.set()
            await asyncio.gather(*tasks)
            assert reads > 10 and writes > 3
            fresh = KeyRing(ctx.root, PgHoldCheck())
            async with ctx.db.tenant_tx(tenant.id) as conn:
                live = await conn.fetch(
                    "SELECT version FROM tenant_keks WHERE wrapped_key IS NOT NULL"
                )
                for key in keys:
                    assert (await fresh.data_key(conn, tenant.id, key.id)).key == key.key
            assert [r["version"] for r in live] == [4]

    asyncio.run(run())


def test_new_epoch_rewraps_everything_and_retiring_waits_for_backup_retention(
    private_vault: Settings,
) -> None:
    url = private_vault.database_url
    assert url is not None
    tenant = make_tenant(private_vault, url)

    async def run() -> None:
        async with operator_context(private_vault, url) as ctx:
            keys = await _seed(ctx, tenant.id, 3)
            conn = await asyncpg.connect(url)
            old_kek = await conn.fetchval(
                "SELECT wrapped_key FROM tenant_keks WHERE tenant_id = $1", tenant.id
            )
            await conn.close()

            report = await start_new_epoch(ctx.db, ctx.keyring, ctx.root)
            assert report.epoch == 2
            # pepper, IP key, anchor MAC key (old anchors), anchor signing key
            assert report.deployment_secrets_rewrapped == 4
            assert [t.new_version for t in report.tenants] == [2]

            with pytest.raises(Conflict, match="current"):
                await retire_epoch(ctx.db, ctx.root, 2, backup_retention_days=35)
            ended = next(e for e in await list_epochs(ctx.db) if e.epoch == 1).ended_at
            assert ended is not None
            with pytest.raises(Conflict, match="backups may need it"):
                await retire_epoch(ctx.db, ctx.root, 1, 35, now=ended + timedelta(days=34))
            with pytest.raises(UnknownEpoch):
                await retire_epoch(ctx.db, ctx.root, 7, 35)
            retired = await retire_epoch(
                ctx.db, ctx.root, 1, 35, now=ended + timedelta(days=35, seconds=1)
            )
            assert retired.retired_at is not None

            # A copy of the old wrapped KEK (a backup, a dead tuple) no longer opens.
            with pytest.raises(KeyUnavailableError):
                ctx.root.unwrap(bytes(old_kek), kek_context(tenant.id, 1))
            fresh = KeyRing(ctx.root, PgHoldCheck())
            async with ctx.db.tenant_tx(tenant.id) as tx:
                for key in keys:
                    assert (await fresh.data_key(tx, tenant.id, key.id)).key == key.key
        # Deployment secrets were rewrapped too: a restart still authenticates keys.
        async with operator_context(private_vault, url) as ctx:
            assert ctx.root.current_epoch() == 2

    asyncio.run(run())


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "DATAVAULT_DATA_DIR": str(settings.data_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "vault", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_keys_commands_from_the_cli(private_vault: Settings) -> None:
    assert private_vault.database_url is not None
    tenant = make_tenant(private_vault, private_vault.database_url)
    rotated = _cli(private_vault, "keys", "rotate", "--tenant", tenant.slug, "--json")
    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout)["tenants"][0]["kek_version"] == 2
    assert _cli(private_vault, "keys", "rotate", "--tenant", "nobody").returncode == 2

    epoch = _cli(private_vault, "keys", "new-epoch", "--json")
    assert epoch.returncode == 0, epoch.stderr
    assert json.loads(epoch.stdout)["epoch"] == 2
    refused = _cli(private_vault, "keys", "retire-epoch", "1")
    assert refused.returncode == 1
    assert "backups may need it" in refused.stderr
    assert _cli(private_vault, "keys", "retire-epoch", "9").returncode == 2
    assert datetime.now(UTC)  # the CLI uses the real clock; the service test injects one
