"""Red team 23: a key rotation's rewrap batch against a tenant's closure pass.

The rewrap batch (subject_rewrap.py `_rewrap_batch`) locks its subjects FOR UPDATE in id
order (keys.sql `lock_subjects`). The closure (workers/closure.py) locks them one by one
in the order `live_generations` lists them, and that query has no ORDER BY: a small
tenant's plan sorts (id order, by chance), a large one's is a hashed DISTINCT (any
order; asked for here with enable_sort off for the test database). A closure pass that
has destroyed subject A's keys (holding A) while a rotation's batch has locked every
subject below A and waits for A: the closure reaches for one of those below A next, and
the two wait for each other. PostgreSQL aborts one: the closure pass (deferred to the
next pass, `closure_deferred`) or the rotation (a DeadlockDetectedError out of
`rotate_tenant_kek`: the operator's command fails; seen here every run).

Finding, fixed (the listing is in id order): both should finish (the closure closes the
tenant, the rotation ends with nothing left to rewrap); one was aborted. A rotation runs
on a `closing` tenant (holds_keys), so an operator rotating every tenant (a root epoch
change) meets any closure that is due. The erasure executor's batch (subjects in its
erasures' order then) and the rewrap batch were the same two orders: see
test_erasure_batch_lock_order.py.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.keys_support import insert_subject, rotation_outcome
from tests.support import ServerThread, Tenant, module_private_server
from vault.db.sql import Queries
from vault.runtime import operator_context
from vault.services.keyring import KeyRing
from vault.services.subject_rewrap import rewrap_subjects
from workers.closure import run_due_closures

server = module_private_server("rt23-rotation-closure")

CLOSURE_Q = Queries("closure")


async def _listing(ctx: Any, tenant_id: uuid.UUID) -> list[uuid.UUID]:
    async with ctx.db.tenant_tx(tenant_id) as conn:
        return [r["subject_id"] for r in await conn.fetch(CLOSURE_Q.live_generations, tenant_id)]


async def _seed_in_id_order(ctx: Any, tenant_id: uuid.UUID) -> list[uuid.UUID]:
    """Subjects with a live key each. The closure's listing is in id order whatever the
    plan (it was a hashed DISTINCT's order on a large tenant, asked for below, and the
    cycle needed a first subject that is not the lowest: red team 23's finding)."""
    for _ in range(12):
        subject = await insert_subject(ctx.db, tenant_id)
        async with ctx.db.tenant_tx(tenant_id) as conn:
            await ctx.keyring.subject_key_for_write(conn, tenant_id, subject, "recording", 1)
    listed = await _listing(ctx, tenant_id)
    assert len(listed) == 12 and listed == sorted(listed)
    return listed


def test_a_rotation_and_a_closure_pass_on_one_tenant_both_finish(
    server: ServerThread, new_tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant: Tenant = new_tenant()
    outcome: dict[str, object] = {}

    async def run() -> None:
        async with operator_context(server.settings, server.database_url) as ctx:
            await _seed_in_id_order(ctx, tenant.id)
            async with ctx.db.tenant_tx(tenant.id) as conn:
                await conn.execute(
                    "UPDATE tenants SET status = 'closing', closure_requested_at = now(),"
                    " closure_due_at = now() WHERE id = $1",
                    tenant.id,
                )
            rotation_gate, closure_holds_one, closure_go = (
                asyncio.Event(),
                asyncio.Event(),
                asyncio.Event(),
            )
            real_rewrap = rewrap_subjects
            real_destroy = KeyRing.destroy_subject_keys

            async def rewrap_after_gate(*args: Any, **kwargs: Any) -> None:
                await rotation_gate.wait()
                await real_rewrap(*args, **kwargs)

            async def destroy_then_pause(self: KeyRing, *args: Any, **kwargs: Any) -> Any:
                result = await real_destroy(self, *args, **kwargs)
                if not closure_holds_one.is_set():
                    closure_holds_one.set()
                    await closure_go.wait()
                return result

            monkeypatch.setattr("vault.services.key_rotation.rewrap_subjects", rewrap_after_gate)
            monkeypatch.setattr(KeyRing, "destroy_subject_keys", destroy_then_pause)

            async def rotate() -> None:
                outcome["rotation"] = await rotation_outcome(ctx, tenant.id)

            async def close() -> None:
                outcome["closure"] = await run_due_closures(
                    ctx.db, ctx.keyring, now=datetime.now(UTC) + timedelta(minutes=1)
                )

            rotation = asyncio.create_task(rotate())
            await asyncio.sleep(0.5)  # its new KEK version committed, waiting at the gate
            closure = asyncio.create_task(close())
            await asyncio.wait_for(closure_holds_one.wait(), 10)
            rotation_gate.set()  # the batch locks the subjects below the closure's first
            await asyncio.sleep(0.5)
            closure_go.set()
            await asyncio.wait_for(asyncio.gather(rotation, closure), 20)

    async def hashed_distinct(on: bool) -> None:
        # A large tenant's listing is a hashed DISTINCT (a small one's sorts, by chance in
        # id order): the plan a tenant of thousands of subjects gets, asked for here.
        conn = await asyncpg.connect(server.database_url)
        try:
            name = await conn.fetchval("SELECT current_database()")
            setting = "SET enable_sort = off" if on else "RESET enable_sort"
            await conn.execute(f'ALTER DATABASE "{name}" {setting}')
        finally:
            await conn.close()

    asyncio.run(hashed_distinct(True))
    try:
        asyncio.run(run())
    finally:
        asyncio.run(hashed_distinct(False))
    assert outcome["closure"] == 1, outcome
    assert not isinstance(outcome["rotation"], Exception), outcome
