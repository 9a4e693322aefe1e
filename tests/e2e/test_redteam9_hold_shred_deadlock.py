"""Red team 9: a hold that share-locked its key rows (migration 0039) against a shred.

Migration 0039 makes `dv_transfer_hold` (under every content, record and metadata read)
and `dv_transfer_hold_keys` (pages) take `FOR SHARE OF d, s`: the data key's row first,
then its subject key's row (the rows of one output row are locked in the order the
locking clause names them). A subject key's shred (`dv_destroy_subject_key`, migration
0016, called by the erasure executor's `dv_destroy_subject_keys`, retention and a
tenant's closure) updates in the other order: the subject key's row, then
(`dv_subject_key_gone`) the data keys' rows under it.

So a hold that share-locks the data key's row after the shred updated the subject key's
row and before it updated the data key's row waits for the shred on the subject key,
and the shred waits for the hold on the data key: a deadlock, which PostgreSQL breaks
after `deadlock_timeout` (1 s) by aborting the one whose wait timed out first.

The window (between the shred's two UPDATEs) is widened on purpose: a third connection
share-locks the data key's row first (as another answer's hold would, in a transaction
still open), so the shred waits on it with the subject key already updated. The read
comes in, share-locks the data key (share locks do not conflict) and waits on the
subject key. The third connection then commits, either at once (the read's wait is the
older one: the read is aborted) or after more than deadlock_timeout (the read's check
found no cycle yet: the shred is aborted).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.helpers import artefact_url, auth, create_key, subject_url, uploaded, wait_for
from tests.jobs import run_worker_pass
from tests.support import ServerThread, Tenant, make_tenant

# PostgreSQL's default deadlock_timeout; the embedded server keeps it.
DEADLOCK_TIMEOUT = 1.0


@pytest.fixture
def tenant(quiet_vault: ServerThread) -> Tenant:
    return make_tenant(quiet_vault.settings, quiet_vault.database_url)


async def _lock_waiters(admin: asyncpg.Connection) -> int:
    """Backends of this database waiting for a lock (the blocker and the monitor never
    wait)."""
    found = await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return int(found)


async def _wait_lock_waiters(admin: asyncpg.Connection, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while await _lock_waiters(admin) < count:
        assert time.monotonic() < deadline, f"never saw {count} backends waiting for a lock"
        await asyncio.sleep(0.02)


async def _deadlocks(admin: asyncpg.Connection) -> int:
    found = await admin.fetchval(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    )
    return int(found)


async def _holds(admin: asyncpg.Connection, tenant: Tenant) -> int:
    found = await admin.fetchval(
        "SELECT count(*) FROM transfer_keys WHERE tenant_id = $1", tenant.id
    )
    return int(found)


async def _race(
    vault: ServerThread, tenant: Tenant, *, blocker_holds_for: float
) -> tuple[httpx.Response, str, int, str]:
    """An artefact read racing its subject's erasure, the shred stopped between its two
    UPDATEs. Returns the read's answer, the marker, the deadlocks PostgreSQL counted
    meanwhile and the erasure's URL."""
    ref = f"deadlock-{uuid.uuid4().hex[:8]}"
    marker = f"secret-{uuid.uuid4().hex}"
    http = vault.client()
    app = create_key(http, tenant, ["ingest", "read"])
    privacy = create_key(http, tenant, ["erasure"])
    item = uploaded(http, app, ref, marker.encode())["id"]
    admin = await asyncpg.connect(vault.database_url)
    blocker = await asyncpg.connect(vault.database_url)
    try:
        deadline = time.monotonic() + 5
        while await _holds(admin, tenant):  # the upload's own hold, released off the path
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        data_key = await admin.fetchval(
            "SELECT data_key_id FROM artefacts WHERE tenant_id = $1 AND id = $2",
            tenant.id, uuid.UUID(item),
        )  # fmt: skip
        before = await _deadlocks(admin)
        # Another answer's hold on the same data key, its transaction still open.
        blocker_tx = blocker.transaction()
        await blocker_tx.start()
        await blocker.execute(
            "SELECT 1 FROM data_keys WHERE tenant_id = $1 AND id = $2 FOR SHARE",
            tenant.id, data_key,
        )  # fmt: skip
        erasure = await asyncio.to_thread(
            http.post, subject_url(ref, "erasure"), headers=auth(privacy)
        )
        assert erasure.status_code == 202, erasure.text
        # The shred: the subject key's row updated, waiting for the data key's.
        worker = asyncio.create_task(asyncio.to_thread(run_worker_pass, vault))
        await _wait_lock_waiters(admin, 1)
        reader = vault.client()
        read = asyncio.create_task(
            asyncio.to_thread(
                reader.get, artefact_url(ref, item, "content"), headers=auth(app), timeout=30
            )
        )
        # Under 0039 the read share-locked the data key and waited for the subject key's
        # row (a second lock waiter); since 0042 a hold takes no row lock and the read
        # answers at once. Either way, give it time to get there.
        deadline = time.monotonic() + 10
        while not read.done() and await _lock_waiters(admin) < 2:
            assert time.monotonic() < deadline, "the read neither answered nor waited"
            await asyncio.sleep(0.02)
        await asyncio.sleep(blocker_holds_for)
        await blocker_tx.commit()
        answer = await read
        reader.close()
        await worker
        after = await _deadlocks(admin)
    finally:
        await blocker.close()
        await admin.close()
        http.close()
    return answer, marker, after - before, f"/v1/erasures/{erasure.json()['id']}"


def _completes(vault: ServerThread, tenant: Tenant, url: str) -> str:
    privacy: dict[str, Any] = {}
    with vault.client() as http:
        privacy = create_key(http, tenant, ["erasure"])

        def completed() -> bool:
            run_worker_pass(vault)
            return bool(http.get(url, headers=auth(privacy)).json()["status"] == "completed")

        wait_for(completed, timeout=90, interval=0.5)
        return str(http.get(url, headers=auth(privacy)).json()["status"])


@pytest.mark.parametrize("blocker_holds_for", [0.1, DEADLOCK_TIMEOUT * 1.5])
def test_a_read_racing_a_shred_between_its_updates_neither_deadlocks_nor_answers_500(
    quiet_vault: ServerThread, tenant: Tenant, blocker_holds_for: float
) -> None:
    """Attack: a download whose hold meets the subject's erasure between the shred's
    UPDATE of the subject key's row and its UPDATE of the data key's row (the window held
    open by a third connection's share lock on the data key, released after 0.1 s or
    after more than deadlock_timeout). Under migration 0039 the hold share-locked the
    rows in the other order and deadlocked with the shred: the read answered 500, or the
    executor's batch was aborted.

    Since 0042 a hold takes no row lock (completion waits for holds in flight behind a
    barrier instead): no deadlock, the read is not held up by the shred, it answers 403
    (the erasure's request already made the subject's data compliance-only) or 404,
    problem+json, without the bytes, and the erasure completes."""
    answer, marker, deadlocks, erasure = asyncio.run(
        _race(quiet_vault, tenant, blocker_holds_for=blocker_holds_for)
    )
    assert deadlocks == 0
    assert answer.status_code in (403, 404), answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert marker not in answer.text
    assert _completes(quiet_vault, tenant, erasure) == "completed"
