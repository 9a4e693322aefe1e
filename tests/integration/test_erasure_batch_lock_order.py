"""An erasure batch against a key rotation's rewrap batch on the same subjects.

Each erasure's shred locks its subject (dv_destroy_subject_keys). The rewrap batch locks
its subjects in id order (keys.sql `lock_subjects`), as a closure pass does. The
executor's batch locked them in its erasures' order (by due time): with the later-due
erasure on the lower subject, the batch held HIGH and waited for LOW while the rotation
held LOW and waited for HIGH, and PostgreSQL aborted one of them (red team 23 named the
cycle; the batch was then redone one erasure at a time, or the operator's rotation
failed). The executor now shreds a batch in subject id order
(`KeyRing.destroy_many_subject_keys`).

The window is widened on purpose: this test holds LOW locked until both batches wait,
the rotation first in line for it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from tests.api.helpers import auth, create_key, put_record
from tests.keys_support import rotation_outcome
from tests.support import ServerThread, fetchval, lock_waiters, make_tenant, private_server
from vault.runtime import operator_context
from workers.erasure import run_due_erasures


@pytest.fixture(scope="module")
def vault(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    # No background jobs: the executor runs here by hand, once.
    with private_server(pg_admin_url, tmp_path_factory.mktemp("lock-order") / "data") as server:
        yield server


def _deadlocks(url: str) -> int:
    return int(
        fetchval(url, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
    )


def test_an_erasure_batch_and_a_rotation_on_the_same_subjects_both_finish(
    vault: ServerThread,
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        for ref in ("one", "two"):
            assert put_record(http, app, ref, "r", b'{"x": 1}').status_code == 201
        subject_of = {
            ref: uuid.UUID(
                str(
                    fetchval(
                        vault.database_url,
                        "SELECT s.id FROM subjects s JOIN records r ON r.tenant_id ="
                        " s.tenant_id AND r.subject_id = s.id WHERE s.tenant_id = $1"
                        " AND r.value_sealed IS NOT NULL ORDER BY r.created_at"
                        " OFFSET $2 LIMIT 1",
                        tenant.id,
                        n,
                    )
                )
            )
            for n, ref in enumerate(("one", "two"))
        }
        low_ref, high_ref = sorted(subject_of, key=lambda ref: subject_of[ref])
        # The higher subject's erasure is due first: the batch used to lock it first.
        erasures = [
            http.post(f"/v1/subjects/{ref}/erasure", headers=auth(privacy)).json()["id"]
            for ref in (high_ref, low_ref)
        ]
    low = subject_of[low_ref]
    deadlocks_before = _deadlocks(vault.database_url)
    outcome: dict[str, Any] = {}

    async def run() -> None:
        blocker = await asyncpg.connect(vault.database_url)
        try:
            async with operator_context(vault.settings, vault.database_url) as ctx:
                tx = blocker.transaction()
                await tx.start()
                await blocker.execute(
                    "SELECT 1 FROM subjects WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
                    tenant.id,
                    low,
                )

                async def rotate() -> None:
                    outcome["rotation"] = await rotation_outcome(ctx, tenant.id)

                async def shred() -> None:
                    outcome["shredded"] = await run_due_erasures(ctx.db, ctx.keyring)

                async def waiters(n: int) -> None:
                    while await asyncio.to_thread(lock_waiters, vault.database_url) < n:
                        await asyncio.sleep(0.02)

                rotation = asyncio.create_task(rotate())
                await asyncio.wait_for(waiters(1), 10)  # the rotation waits for LOW
                shredding = asyncio.create_task(shred())
                await asyncio.wait_for(waiters(2), 10)  # the batch waits too, behind it
                await tx.commit()
                await asyncio.wait_for(asyncio.gather(rotation, shredding), 30)
        finally:
            await blocker.close()

    asyncio.run(run())
    assert not isinstance(outcome["rotation"], Exception), outcome
    assert outcome["shredded"] == 2
    # Neither was aborted and redone: no lock cycle was ever found.
    assert _deadlocks(vault.database_url) == deadlocks_before
    with vault.client() as http:
        statuses = [
            http.get(f"/v1/erasures/{erasure}", headers=auth(privacy)).json()["status"]
            for erasure in erasures
        ]
    assert all(status in ("in_progress", "completed") for status in statuses), statuses
