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
from tests.support import ServerThread, Tenant, make_tenant
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
    """A connection inside a hold's transaction: the tenant's transfer-holds lock taken
    shared, not yet committed (as dv_transfer_hold keeps it to its commit)."""
    conn = await asyncpg.connect(database_url)
    await conn.execute("BEGIN")
    await conn.execute(
        "SELECT pg_advisory_xact_lock_shared(dv_transfer_holds_lock_key($1))", tenant_id
    )
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
