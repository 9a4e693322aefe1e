"""The publisher's completion barrier (migration 0042) is taken for a tenant only when it
has an erasure to complete.

Before an erasure's completion looks for transfers holding its keys, the publisher takes
the tenant's transfer-holds lock exclusively, waiting for every hold statement in flight;
PostgreSQL queues every later hold of the tenant behind that waiting barrier. So a tenant
with nothing to complete must not be made to wait at all: a hold in flight there (held
open here from another connection) must not stall the publisher's pass. And a tenant
with a shredded erasure still passes the barrier: its completion waits for that hold.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from tests.api.helpers import auth, create_key, put_record, subject_url
from tests.jobs import completion_racing_the_barrier
from tests.support import (
    ServerThread,
    Tenant,
    begin_hold,
    hold_key_uncommitted,
    make_tenant,
)
from vault.runtime import operator_context
from vault.services.receipts import ReceiptSigner
from workers.erasure import run_due_erasures
from workers.ledger import complete_published_erasures, publish_pending

# Far longer than a pass over the test database's tenants takes.
PASS_WITHIN = 10.0


@pytest.fixture
def tenant(quiet_vault: ServerThread) -> Tenant:
    return make_tenant(quiet_vault.settings, quiet_vault.database_url)


async def _hold_in_flight(database_url: str, tenant_id: uuid.UUID) -> asyncpg.Connection:
    """A connection inside a hold's transaction (`begin_hold`)."""
    conn = await asyncpg.connect(database_url)
    await begin_hold(conn, tenant_id)
    return conn


def test_a_tenant_with_nothing_to_complete_is_not_made_to_wait(
    quiet_vault: ServerThread, tenant: Tenant
) -> None:
    async def run() -> None:
        hold = await _hold_in_flight(quiet_vault.database_url, tenant.id)
        try:
            async with operator_context(quiet_vault.settings, quiet_vault.database_url) as ctx:
                await asyncio.wait_for(complete_published_erasures(ctx.db), PASS_WITHIN)
        finally:
            await hold.close()

    asyncio.run(run())


def test_a_shredded_erasure_still_waits_for_the_hold_in_flight(
    quiet_vault: ServerThread, tenant: Tenant
) -> None:
    with quiet_vault.client() as http:
        ingest = create_key(http, tenant, ["ingest"])
        privacy = create_key(http, tenant, ["erasure"])
        assert put_record(http, ingest, "waited", "r", b"{}").status_code == 201
        erasure = http.post(subject_url("waited", "erasure"), headers=auth(privacy))
        assert erasure.status_code == 202, erasure.text
        url = f"/v1/erasures/{erasure.json()['id']}"

        async def run() -> bool:
            async with operator_context(quiet_vault.settings, quiet_vault.database_url) as ctx:
                await run_due_erasures(ctx.db, ctx.keyring)
                signer = await ReceiptSigner.load_or_create(ctx.db, ctx.root)
                await publish_pending(ctx.db, ctx.blobs, signer=signer)
                hold = await _hold_in_flight(quiet_vault.database_url, tenant.id)
                try:
                    await asyncio.wait_for(complete_published_erasures(ctx.db), 1.0)
                    waited = False
                except TimeoutError:
                    waited = True
                finally:
                    await hold.close()
                await complete_published_erasures(ctx.db)
                return waited

        waited = asyncio.run(run())
        status = http.get(url, headers=auth(privacy)).json()["status"]
    assert waited, "completion did not wait for the hold in flight"
    assert status == "completed"


def test_an_erasure_shredded_after_the_barrier_does_not_complete_past_a_hold_in_flight(
    quiet_vault: ServerThread, tenant: Tenant
) -> None:
    """Attack: the publisher passes the tenant's barrier (another erasure, kept waiting by
    a transfer, gives it a reason to); right after it, a read holds subject X's key
    (it read the key live; its hold not yet committed), X's erasure is shredded and its
    ledger rows published (an inline publish or another process's publisher can do both
    between the barrier and completion's look). Expected: X does not complete in that
    pass: the barrier came before X's shred, so it proves nothing about X's holds."""
    settings, url = quiet_vault.settings, quiet_vault.database_url
    with quiet_vault.client() as http:
        ingest = create_key(http, tenant, ["ingest"])
        privacy = create_key(http, tenant, ["erasure"])
        for ref in ("waiting", "raced"):
            assert put_record(http, ingest, ref, f"{ref}-rec", b"{}").status_code == 201
        waiting = http.post(subject_url("waiting", "erasure"), headers=auth(privacy))
        assert waiting.status_code == 202, waiting.text

        async def key_of(admin: asyncpg.Connection, name: str) -> uuid.UUID:
            found = await admin.fetchval(
                "SELECT data_key_id FROM records WHERE tenant_id = $1 AND name = $2",
                tenant.id, name,
            )  # fmt: skip
            assert isinstance(found, uuid.UUID)
            return found

        async def run() -> None:
            admin = await asyncpg.connect(url)
            async with operator_context(settings, url) as ctx:
                signer = await ReceiptSigner.load_or_create(ctx.db, ctx.root)
                await run_due_erasures(ctx.db, ctx.keyring)
                await publish_pending(ctx.db, ctx.blobs, signer=signer)
                # "waiting" stays in progress: a transfer holds its key (committed).
                await admin.execute(
                    "INSERT INTO transfer_keys (tenant_id, transfer_id, data_key_id, held_until)"
                    " VALUES ($1, gen_random_uuid(), $2, now() + interval '1 hour')",
                    tenant.id, await key_of(admin, "waiting-rec"),
                )  # fmt: skip
                raced = http.post(subject_url("raced", "erasure"), headers=auth(privacy))
                assert raced.status_code == 202, raced.text
                raced_key = await key_of(admin, "raced-rec")
                hold = await asyncpg.connect(url)

                async def after_barrier() -> None:
                    # A read holds the raced key, live in its snapshot, uncommitted.
                    await hold_key_uncommitted(hold, tenant.id, raced_key)
                    # The raced erasure shredded and published meanwhile.
                    await run_due_erasures(ctx.db, ctx.keyring)
                    await publish_pending(ctx.db, ctx.blobs, signer=signer)

                # One completing task at a time: the read's hold stays open through the
                # pass, and a second task's own barrier would wait for it (timed out).
                try:
                    timed_out = await completion_racing_the_barrier(ctx.db, after_barrier)
                    shown = http.get(f"/v1/erasures/{raced.json()['id']}", headers=auth(privacy))
                finally:
                    await hold.close()  # the read's hold never commits: rolled back
            await admin.close()
            assert shown.json()["status"] == "in_progress", shown.text
            assert not timed_out

        asyncio.run(run())
