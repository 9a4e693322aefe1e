"""Red team (second outside review): a new root-key epoch gives a closed tenant a live
KEK again. `keys new-epoch` (and the epoch schedule, and `keys rotate`) rotate every
tenant the directory lists, closed ones included: rotate_tenant_kek inserts a fresh KEK
version wrapped under the new root key for a tenant whose KEKs and HMAC key its closure
destroyed. It opens nothing old (a new random key), but DESIGN.md says a closed tenant
keeps no live KEK, and `datavault check deletion` then reports
`closed_tenant_keys_live` for good (after every later epoch too), so the alert
`DatavaultDeletionInvariantViolated` fires with nothing an operator can fix.

Steps: close a tenant (closure due, run), then `datavault keys new-epoch`. Observed: the
closed tenant has one live KEK version; check deletion names it.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support import make_tenant, private_server
from vault.errors import TenantClosed
from vault.runtime import OperatorContext, operator_context
from vault.services.root_epochs import rotate_everything, start_new_epoch
from workers.closure import run_due_closures
from workers.deletion_check import find_deletion_violations


async def _live_keks(ctx: OperatorContext, tenant_id: uuid.UUID) -> int:
    async with ctx.db.tenant_tx(tenant_id) as conn:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM tenant_keks WHERE tenant_id = $1 AND wrapped_key IS NOT NULL",
                tenant_id,
            )
        )


def test_a_new_epoch_leaves_a_closed_tenant_without_keys(pg_admin_url: str, tmp_path: Path) -> None:
    with private_server(pg_admin_url, tmp_path / "data") as server:
        tenant = make_tenant(server.settings, server.database_url)
        with server.client() as http:
            requested = http.post(
                "/v1/tenant/closure", json={"reason": "contract ended"}, headers=tenant.auth()
            )
        assert requested.status_code == 202, requested.text

        async def run() -> tuple[int, int]:
            async with operator_context(server.settings, server.database_url) as ctx:
                later = datetime.now(UTC) + timedelta(days=61)
                assert await run_due_closures(ctx.db, ctx.keyring, now=later) == 1
                before = await _live_keks(ctx, tenant.id)
                await start_new_epoch(ctx.db, ctx.keyring, ctx.root, propagation_seconds=0)
                return before, await _live_keks(ctx, tenant.id)

        before, after = asyncio.run(run())
        violations = asyncio.run(
            find_deletion_violations(server.database_url, grace=timedelta(days=1))
        )
    assert before == 0
    assert after == 0
    assert [v for v in violations if v.kind == "closed_tenant_keys_live"] == []


def test_keys_rotate_skips_a_closed_tenant_and_refuses_one_named(
    pg_admin_url: str, tmp_path: Path
) -> None:
    with private_server(pg_admin_url, tmp_path / "data") as server:
        closed = make_tenant(server.settings, server.database_url)
        open_tenant = make_tenant(server.settings, server.database_url)
        with server.client() as http:
            requested = http.post(
                "/v1/tenant/closure", json={"reason": "contract ended"}, headers=closed.auth()
            )
        assert requested.status_code == 202, requested.text

        async def run() -> tuple[set[uuid.UUID], int]:
            async with operator_context(server.settings, server.database_url) as ctx:
                later = datetime.now(UTC) + timedelta(days=61)
                assert await run_due_closures(ctx.db, ctx.keyring, now=later) == 1
                report = await rotate_everything(ctx.db, ctx.keyring, ctx.root)
                with pytest.raises(TenantClosed):
                    await rotate_everything(ctx.db, ctx.keyring, ctx.root, [closed.id])
                return {r.tenant_id for r in report.tenants}, await _live_keks(ctx, closed.id)

        rotated, live = asyncio.run(run())
    assert open_tenant.id in rotated and closed.id not in rotated
    assert live == 0
