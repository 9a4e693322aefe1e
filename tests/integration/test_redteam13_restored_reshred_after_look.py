"""Red team 13: completion's look before the barrier (3b3924c) assumes an erasure that is
ready (in_progress, every ledger row published) has no shred still to come. A restored
erasure does: reconcile's shred_restored (workers/erasure.py) shreds, for an erasure
already in_progress, every live key of its generations that a backup from an abandoned
line of history holds, and writes their ledger rows under the same erasure.

Attack: the erasure is ready when the publisher looks; after the barrier a read holds a
data key under such a restored-line subject key (read live, hold not yet committed);
shred_restored destroys that subject key and its ledger row is published (the publisher
of another process, or reconcile's own tenant transaction committing meanwhile). The
barrier came before that shred, so it proves nothing about the read's hold; yet the
erasure is in the look's list and completes with the hold open.

Expected: the erasure does not complete in that pass (it would if every shred, not
only the first, re-armed the look: e.g. the look also comparing the erasure's newest
ledger row or items' destroyed_at against the barrier's time).
"""

from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg
import pytest

from tests.api.helpers import auth, create_key, put_record, subject_url
from tests.jobs import completion_racing_the_barrier
from tests.support import (
    ServerThread,
    Tenant,
    hold_key_uncommitted,
    make_tenant,
)
from vault.runtime import operator_context
from vault.services.receipts import ReceiptSigner
from workers.erasure import run_due_erasures, shred_restored
from workers.ledger import publish_pending


@pytest.fixture
def tenant(quiet_vault: ServerThread) -> Tenant:
    return make_tenant(quiet_vault.settings, quiet_vault.database_url)


async def _restored_line_keys(
    admin: asyncpg.Connection, tenant_id: uuid.UUID, record_name: str
) -> uuid.UUID:
    """A subject key (another category, the erased generation) and a data key under it,
    live: what a backup from an abandoned line of history brings back. Written as the
    restore writes rows (triggers off: the restore is pg_restore, not the vault).
    Returns the data key's id."""
    source = await admin.fetchrow(
        "SELECT s.subject_id, s.generation, s.kek_version FROM records r"
        " JOIN data_keys d ON d.tenant_id = r.tenant_id AND d.id = r.data_key_id"
        " JOIN subject_keys s ON s.tenant_id = d.tenant_id AND s.id = d.subject_key_id"
        " WHERE r.tenant_id = $1 AND r.name = $2",
        tenant_id, record_name,
    )  # fmt: skip
    assert source is not None
    subject_key, data_key = uuid.uuid4(), uuid.uuid4()
    async with admin.transaction():
        await admin.execute("SET LOCAL session_replication_role = replica")
        await admin.execute(
            "INSERT INTO subject_keys (tenant_id, id, subject_id, category, generation,"
            " kek_version, wrapped_key) VALUES ($1, $2, $3, 'abandoned-line', $4, $5, $6)",
            tenant_id, subject_key, source["subject_id"], source["generation"],
            source["kek_version"], os.urandom(60),
        )  # fmt: skip
        await admin.execute(
            "INSERT INTO data_keys (tenant_id, id, subject_key_id, purpose, wrapped_key)"
            " VALUES ($1, $2, $3, 'record', $4)",
            tenant_id, data_key, subject_key, os.urandom(60),
        )  # fmt: skip
    return data_key


def test_a_restored_erasures_later_shred_does_not_complete_past_a_hold_in_flight(
    quiet_vault: ServerThread, tenant: Tenant
) -> None:
    settings, url = quiet_vault.settings, quiet_vault.database_url
    with quiet_vault.client() as http:
        ingest = create_key(http, tenant, ["ingest"])
        privacy = create_key(http, tenant, ["erasure"])
        assert put_record(http, ingest, "raced", "raced-rec", b"{}").status_code == 201
        raced = http.post(subject_url("raced", "erasure"), headers=auth(privacy))
        assert raced.status_code == 202, raced.text
        raced_id = uuid.UUID(raced.json()["id"])

        async def run() -> None:
            admin = await asyncpg.connect(url)
            async with operator_context(settings, url) as ctx:
                signer = await ReceiptSigner.load_or_create(ctx.db, ctx.root)
                await run_due_erasures(ctx.db, ctx.keyring)
                await publish_pending(ctx.db, ctx.blobs, signer=signer)
                # Ready: in progress, every ledger row published. The restore brings back
                # a key of its generation that its line never had.
                restored_data_key = await _restored_line_keys(admin, tenant.id, "raced-rec")
                hold = await asyncpg.connect(url)

                async def after_barrier() -> None:
                    # A read holds the restored-line data key, live, uncommitted.
                    await hold_key_uncommitted(hold, tenant.id, restored_data_key)
                    # Reconcile's shred of the restored erasure commits, and is published.
                    async with ctx.db.tenant_tx(tenant.id) as conn:
                        assert await shred_restored(conn, ctx.keyring, tenant.id, [raced_id])
                    await publish_pending(ctx.db, ctx.blobs, signer=signer)

                try:
                    timed_out = await completion_racing_the_barrier(ctx.db, after_barrier)
                    status = await admin.fetchval(
                        "SELECT status FROM erasures WHERE tenant_id = $1 AND id = $2",
                        tenant.id, raced_id,
                    )  # fmt: skip
                finally:
                    await hold.close()  # the read's hold never commits: rolled back
            await admin.close()
            # Waiting at a second barrier behind the open hold (timed_out) is a right answer
            # too: only completing past the hold is wrong.
            assert timed_out or status == "in_progress", status

        asyncio.run(run())
