"""Red team 18: what held once holds stopped locking their tenant's row (migration 0045).

A KEK rotation's first transaction holds the tenant's row FOR UPDATE (widened here to a
second): record reads no longer wait for it, and every read throughout the rotation (its
rewrap batches, the old version's destruction) answers 200, never 500. A closure pass with
a hold in flight (its transfer-holds lock taken, its row written, uncommitted) neither
waits for that hold nor leaves the tenant readable: the read after it answers 401.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

import vault.services.key_rotation as key_rotation
from tests.api.helpers import auth, create_key, put_record, record_url
from tests.support import ServerThread, Tenant, hold_key_uncommitted, module_private_server
from vault.runtime import operator_context
from workers.closure import run_due_closures

# A vault of this module's own: its closures, and the 401s that follow them, touch no
# other module's tenants nor count against the shared vault's failed-authentication limit.
server = module_private_server("rt18-holds")

SUBJECTS = 3


def _written(server: ServerThread, tenant: Tenant) -> dict[str, Any]:
    with server.client() as http:
        key = create_key(http, tenant, ["ingest", "read"])
        for n in range(SUBJECTS):
            answer = put_record(http, key, f"rt18-{n}", "r", b'{"n": 1}')
            assert answer.status_code in (200, 201)
    return key


def _read_all(server: ServerThread, key: dict[str, Any]) -> list[tuple[int, float]]:
    """Each subject's record read once: (status, seconds it took)."""
    answers = []
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        for n in range(SUBJECTS):
            started = time.monotonic()
            answer = http.get(record_url(f"rt18-{n}", "r"), headers=auth(key))
            answers.append((answer.status_code, time.monotonic() - started))
    return answers


def test_reads_throughout_a_rotation_answer_without_waiting_for_its_tenant_lock(
    server: ServerThread, new_tenant: Callable[[], Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = new_tenant()
    key = _written(server, tenant)
    real_rewrap_hmac = key_rotation._rewrap_hmac_key
    locked = threading.Event()

    async def rewrap_hmac_slowly(*args: Any) -> None:
        locked.set()  # the tenant's row is locked FOR UPDATE from here to the commit
        await asyncio.sleep(1.0)
        await real_rewrap_hmac(*args)

    monkeypatch.setattr(key_rotation, "_rewrap_hmac_key", rewrap_hmac_slowly)
    versions: list[tuple[int, ...]] = []

    def rotate() -> None:
        async def run() -> None:
            async with operator_context(server.settings, server.database_url) as ctx:
                report = await key_rotation.rotate_tenant_kek(
                    ctx.db, ctx.keyring, ctx.root, tenant.id, batch=1
                )
                versions.append(report.destroyed_versions)

        asyncio.run(run())

    rotation = threading.Thread(target=rotate)
    rotation.start()
    answers: list[tuple[int, float]] = []
    try:
        assert locked.wait(10)
        under_the_lock = _read_all(server, key)
        while rotation.is_alive():
            answers += _read_all(server, key)
    finally:
        rotation.join(20)
    answers += _read_all(server, key)
    assert versions and versions[0], "the rotation destroyed no old version"
    assert all(status == 200 for status, _ in under_the_lock + answers)
    assert all(seconds < 0.5 for _, seconds in under_the_lock)


def test_a_closure_with_a_hold_in_flight_neither_waits_nor_leaves_reads_open(
    server: ServerThread, new_tenant: Callable[[], Tenant]
) -> None:
    tenant = new_tenant()
    key = _written(server, tenant)

    async def race() -> tuple[int, float]:
        admin = await asyncpg.connect(server.database_url)
        holder = await asyncpg.connect(server.database_url)
        try:
            data_key = await admin.fetchval(
                "SELECT data_key_id FROM records WHERE tenant_id = $1 AND current LIMIT 1",
                tenant.id,
            )
            await hold_key_uncommitted(holder, tenant.id, data_key)
            started = time.monotonic()
            async with operator_context(server.settings, server.database_url) as ctx:
                closed = await asyncio.wait_for(
                    run_due_closures(
                        ctx.db, ctx.keyring, now=datetime.now(UTC) + timedelta(days=61)
                    ),
                    10,
                )
            took = time.monotonic() - started
            await holder.execute("COMMIT")  # the hold's row stays, its keys destroyed
            status = await admin.fetchval("SELECT status FROM tenants WHERE id = $1", tenant.id)
            assert status == "closed"
            return closed, took
        finally:
            await holder.close()
            await admin.close()

    with server.client() as http:
        requested = http.post("/v1/tenant/closure", json={"reason": "rt18"}, headers=tenant.auth())
        assert requested.status_code == 202
    closed, took = asyncio.run(race())
    assert closed >= 1 and took < 5  # other tests' due closures may run in the pass
    assert {status for status, _ in _read_all(server, key)} == {401}
