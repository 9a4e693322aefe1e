"""Red team 3: races with the batched erasure executor (issue 19: up to 25 instructions per
transaction, the tenant's settings read once per batch). The window is widened on purpose:
the executor runs in this process with a pause injected between two instructions of one
batch, and one batch at a time (`_PARALLEL = 1`), so which instruction lands in which
batch is fixed rather than hoped for. What is here held: these tests guard it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.helpers import auth, create_key
from tests.jobs import run_worker_pass
from tests.support import ServerThread, Tenant, make_tenant
from vault.runtime import operator_context
from workers import erasure as executor

RAISED = {"retention": {"support": {"keep_at_least_days": 365}}}


@pytest.fixture
def tenant(quiet_vault: ServerThread) -> Tenant:
    return make_tenant(quiet_vault.settings, quiet_vault.database_url)


@pytest.fixture
def one_batch_at_a_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(executor, "_PARALLEL", 1)
    yield


def _two_erasures(http: httpx.Client, tenant: Tenant) -> dict[str, Any]:
    """Two subjects with a support ticket each (support: no statutory retention by
    default), both erased at once (no grace period): due together, one batch."""
    keys = {
        "app": create_key(http, tenant, ["ingest", "read"]),
        "privacy": create_key(http, tenant, ["erasure"]),
        "compliance": create_key(http, tenant, ["compliance"]),
    }
    for ref in ("first", "second"):
        written = http.put(
            f"/v1/subjects/{ref}/records/ticket?category=support",
            json={"text": f"ticket of {ref}"},
            headers=auth(keys["app"]),
        )
        assert written.status_code == 201, written.text
    keys["erasures"] = {
        ref: http.post(f"/v1/subjects/{ref}/erasure", headers=auth(keys["privacy"])).json()["id"]
        for ref in ("first", "second")
    }
    return keys


def _raise_support_retention(http: httpx.Client, tenant: Tenant) -> None:
    raised = http.patch("/v1/tenant/settings", json=RAISED, headers=tenant.auth())
    assert raised.status_code == 200, raised.text


def test_control_a_retention_raised_before_the_pass_keeps_the_category(
    quiet_vault: ServerThread, tenant: Tenant, one_batch_at_a_time: None
) -> None:
    """Negative control: support's keep_at_least_days raised before the executor's pass
    keeps both subjects' support tickets (retained, compliance reads them)."""
    with quiet_vault.client() as http:
        keys = _two_erasures(http, tenant)
        _raise_support_retention(http, tenant)
        run_worker_pass(quiet_vault)
        shown = http.get(
            f"/v1/erasures/{keys['erasures']['second']}", headers=auth(keys["privacy"])
        ).json()
        kept = http.get("/v1/subjects/second/records/ticket", headers=auth(keys["compliance"]))
    assert shown["status"] == "held", shown
    assert [r["category"] for r in shown["retained"]] == ["support"]
    assert kept.status_code == 200, kept.text


def test_a_retention_raise_racing_a_batch_commits_only_after_the_batch(
    quiet_vault: ServerThread, tenant: Tenant, one_batch_at_a_time: None
) -> None:
    """Held (red team 3 tried it): the batch reads the tenant's settings once, so a raise
    of statutory retention committed between two of its instructions would be ignored
    for the second. It cannot commit there: the settings PATCH locks the tenant's row FOR
    UPDATE, which waits for the batch's key-share lock on it (the foreign keys of the
    items and ledger rows it wrote for the first instruction). So the PATCH answers only
    after the batch committed, and the second shred precedes the raise in every sense.

    Steps: two subjects with a support ticket each are erased at once (one batch); a
    pause is injected after the first instruction's shred; the admin's PATCH raising
    support's keep_at_least_days starts there, in another thread; the batch then goes on.
    If the lock were ever weakened (FOR NO KEY UPDATE, settings outside the tenants row)
    the PATCH would answer mid-batch and this test would fail."""
    real_shred = executor._shred_claimed
    calls = 0
    patch_done = threading.Event()
    patched_mid_batch: list[bool] = []

    def patch() -> None:
        with quiet_vault.client() as http:
            _raise_support_retention(http, tenant)
        patch_done.set()

    async def paused_shred(*args: Any, **kwargs: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:  # between the two instructions of the one batch
            threading.Thread(target=patch, daemon=True).start()
            # Give the PATCH ample time to commit if nothing held it back.
            patched_mid_batch.append(await asyncio.to_thread(patch_done.wait, 3.0))
        return await real_shred(*args, **kwargs)

    async def executor_pass() -> None:
        async with operator_context(quiet_vault.settings, quiet_vault.database_url) as ctx:
            await executor.run_due_erasures(ctx.db, ctx.keyring)

    with quiet_vault.client() as http:
        _two_erasures(http, tenant)
        with pytest.MonkeyPatch.context() as patcher:
            patcher.setattr(executor, "_shred_claimed", paused_shred)
            asyncio.run(executor_pass())
        assert patch_done.wait(30), "the PATCH never answered"
    assert calls == 2  # both in one batch, the pause between them
    assert patched_mid_batch == [False]  # it waited for the batch's commit
