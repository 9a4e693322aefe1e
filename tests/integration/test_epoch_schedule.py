"""Root-key epochs start and retire by themselves (DESIGN.md "Residual copies"), with an
injected clock instead of waiting a month."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from crypto.errors import KeyUnavailableError
from tests.support import make_tenant
from vault.config import Settings
from vault.runtime import operator_context
from vault.services.root_epochs import list_epochs
from vault.services.tenants import kek_context
from workers.epochs import _SCHEDULE_LOCK, EpochSchedule, run_epoch_schedule

MONTHLY = EpochSchedule(epoch_days=30, backup_retention_days=35)
# Longer epochs than the backup retention, so the fake clock jumping past the retention
# does not also make the next epoch due.
BIMONTHLY = EpochSchedule(epoch_days=60, backup_retention_days=35)


def test_epoch_starts_when_due_and_the_old_one_retires_after_backup_retention(
    private_vault: Settings,
) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)

    async def run() -> None:
        async with operator_context(private_vault, url) as ctx:
            conn = await asyncpg.connect(url)  # the owner: a raw copy, like a backup
            old_kek = await conn.fetchval(
                "SELECT wrapped_key FROM tenant_keks WHERE tenant_id = $1", tenant.id
            )
            early = await run_epoch_schedule(ctx.db, ctx.keyring, ctx.root, BIMONTHLY)
            assert (early.started, early.retired) == (None, ())

            # Epoch 1 began 60 days ago.
            await conn.execute("UPDATE root_epochs SET started_at = now() - interval '60 days'")
            await conn.close()
            due = await run_epoch_schedule(ctx.db, ctx.keyring, ctx.root, BIMONTHLY)
            assert due.started == 2
            assert ctx.root.current_epoch() == 2
            ended = next(e for e in await list_epochs(ctx.db) if e.epoch == 1).ended_at
            assert ended is not None

            # Backups may still hold epoch 1 for 35 days after it ended: it stays.
            kept = await run_epoch_schedule(
                ctx.db, ctx.keyring, ctx.root, BIMONTHLY, lambda: ended + timedelta(days=34)
            )
            assert kept.retired == ()
            assert ctx.root.unwrap(bytes(old_kek), kek_context(tenant.id, 1))

            gone = await run_epoch_schedule(
                ctx.db,
                ctx.keyring,
                ctx.root,
                BIMONTHLY,
                lambda: ended + timedelta(days=35, seconds=1),
            )
            assert gone.retired == (1,)
            # The copy taken before (a backup, a dead tuple) no longer opens anywhere.
            with pytest.raises(KeyUnavailableError):
                ctx.root.unwrap(bytes(old_kek), kek_context(tenant.id, 1))

    asyncio.run(run())


def test_no_schedule_means_epochs_only_by_command(private_vault: Settings) -> None:
    url = private_vault.database_url or ""

    async def run() -> None:
        async with operator_context(private_vault, url) as ctx:
            far = datetime.now(UTC) + timedelta(days=400)
            off = EpochSchedule(epoch_days=0, backup_retention_days=35)
            outcome = await run_epoch_schedule(ctx.db, ctx.keyring, ctx.root, off, lambda: far)
            assert outcome.started is None
            assert [e.epoch for e in await list_epochs(ctx.db)] == [1]

    asyncio.run(run())


def test_a_second_process_skips_its_turn_while_one_runs_the_schedule(
    private_vault: Settings,
) -> None:
    url = private_vault.database_url or ""

    async def run() -> None:
        async with operator_context(private_vault, url) as ctx:
            due = datetime.now(UTC) + timedelta(days=31)
            async with ctx.db.advisory_lock(_SCHEDULE_LOCK) as held:  # the other process
                assert held
                skipped = await run_epoch_schedule(
                    ctx.db, ctx.keyring, ctx.root, MONTHLY, lambda: due
                )
            assert not skipped.ran
            assert [e.epoch for e in await list_epochs(ctx.db)] == [1]
            ran = await run_epoch_schedule(ctx.db, ctx.keyring, ctx.root, MONTHLY, lambda: due)
            assert ran.ran and ran.started == 2

    asyncio.run(run())
