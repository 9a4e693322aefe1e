"""Red team 18: a tenant's closure racing an upload's first transaction, now that
transfer_keys has no foreign key to tenants (migration 0045).

An upload's transaction for a subject erased before (its row kept, none of its subject
keys live, so the closure has nothing of it to destroy and never locks its row) creates
the subject key of the subject's next generation (its KEK version locked FOR SHARE), the
data key under it, and the upload's hold (transfers.sql `hold_key`). The hold's
referential check was the only statement in that transaction that locked the tenant's row
(FOR KEY SHARE): the closure's `due` (FOR UPDATE) waited for the upload's commit and then
saw, and destroyed, the new subject key. Without it the closure reads its live subject
keys while the upload's are uncommitted, waits only at the KEK (the writer's FOR SHARE),
destroys it once the upload commits and closes the tenant: the new subject key stays live
in a closed tenant, with no shred-ledger row.

A record write's transaction never locked the tenant's row (it writes no hold): the same
race was open for it before migration 0045 (the second test fails on main too).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable

import asyncpg
import httpx
import pytest

from tests.api.helpers import create_key, put_record, upload
from tests.jobs import (
    close_due_tenants,
    deletion_violations,
    erase_and_run_worker,
    run_worker_pass,
)
from tests.support import ServerThread, Tenant, module_private_server, pause_after_first_call
from vault.db.database import Connection
from vault.services.keyring import KeyRing
from vault.services.transfers import TransferLease

# A vault of this module's own: its closures, and the 401s that follow them, touch no
# other module's tenants nor count against the shared vault's failed-authentication limit.
server = module_private_server("rt18-closure-races")

REF = "rt18-closing"


def _status(database_url: str, tenant: Tenant) -> str:
    async def run() -> str:
        conn = await asyncpg.connect(database_url)
        try:
            return str(await conn.fetchval("SELECT status FROM tenants WHERE id = $1", tenant.id))
        finally:
            await conn.close()

    return asyncio.run(run())


def _live_subject_keys(database_url: str, tenant: Tenant) -> int:
    async def run() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM subject_keys"
                    " WHERE tenant_id = $1 AND wrapped_key IS NOT NULL",
                    tenant.id,
                )
            )
        finally:
            await conn.close()

    return asyncio.run(run())


def _erased_and_closing(
    server: ServerThread, tenant: Tenant, *, erased: bool = True
) -> dict[str, object]:
    """A subject written, then (`erased`) erased (its row stays, with no live subject
    key: the closure has no key of it to destroy and never locks its row), and the
    tenant's closure requested. Returns an API key that writes and reads."""
    with server.client() as http:
        key = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        assert put_record(http, key, REF, "a", b'{"a": 1}').status_code in (200, 201)
        if erased:
            status, _ = erase_and_run_worker(
                server, http, privacy, REF, until=("completed",), seconds=6
            )
            assert status == "completed"
            assert _live_subject_keys(server.database_url, tenant) == 0
        requested = http.post(
            "/v1/tenant/closure", json={"reason": "red team 18"}, headers=tenant.auth()
        )
        assert requested.status_code == 202
    return key


def _closure_while_open(
    server: ServerThread, in_transaction: threading.Event, go_on: threading.Event,
    write: Callable[[], None],
) -> list[int]:  # fmt: skip
    """`write` started; once its transaction is paused (`in_transaction`), a closure pass
    runs as far as it can for a second, then the write goes on. Returns the closure
    pass's count of tenants closed (any tenant due on this database)."""
    writer = threading.Thread(target=write)
    writer.start()
    closed: list[int] = []
    closer = threading.Thread(target=lambda: closed.append(close_due_tenants(server)))
    try:
        assert in_transaction.wait(10), "the write never reached its pause"
        closer.start()
        closer.join(1.0)
    finally:
        go_on.set()
        writer.join(20)
    closer.join(20)
    return closed


def _upload_racing_closure(
    server: ServerThread, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, *, erased: bool
) -> list[int]:
    """An upload in a category the subject has no key in yet, its first transaction kept
    open after its hold was written (widened on purpose: in a real vault it is a few
    statements long), a closure pass meanwhile."""
    key = _erased_and_closing(server, tenant, erased=erased)
    real_claim = TransferLease.claim
    in_transaction, go_on = threading.Event(), threading.Event()

    async def claim_then_wait(
        self: TransferLease, data_key_id: uuid.UUID, conn: Connection | None = None
    ) -> None:
        await real_claim(self, data_key_id, conn)
        if conn is not None and not in_transaction.is_set():
            in_transaction.set()
            while not go_on.is_set():
                await asyncio.sleep(0.02)

    monkeypatch.setattr(TransferLease, "claim", claim_then_wait)

    def send() -> None:
        with httpx.Client(base_url=server.base_url, timeout=20) as http:
            upload(http, key, REF, b"x" * 4096, category="recording")

    return _closure_while_open(server, in_transaction, go_on, send)


def test_a_closure_racing_an_uploads_new_subject_key_leaves_no_live_key(
    server: ServerThread, new_tenant: Callable[[], Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = new_tenant()
    assert len(_upload_racing_closure(server, tenant, monkeypatch, erased=True)) == 1
    assert _status(server.database_url, tenant) == "closed"
    assert _live_subject_keys(server.database_url, tenant) == 0


def test_held_a_closure_racing_an_upload_to_a_subject_with_live_keys_leaves_none(
    server: ServerThread, new_tenant: Callable[[], Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What held: a subject that still has live keys is one the closure destroys, under
    its row's lock (which the upload's new subject key locks too): it waits for the
    upload's commit and then sees its new key."""
    tenant = new_tenant()
    assert len(_upload_racing_closure(server, tenant, monkeypatch, erased=False)) == 1
    assert _status(server.database_url, tenant) == "closed"
    assert _live_subject_keys(server.database_url, tenant) == 0


def _record_write_racing_closure(
    server: ServerThread, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> list[int]:
    """A record write to the erased subject whose transaction pauses once it has created
    the subject key of the subject's next generation, a closure pass meanwhile."""
    key = _erased_and_closing(server, tenant)
    in_transaction, go_on = pause_after_first_call(monkeypatch, KeyRing, "subject_key_for_write")

    def send() -> None:
        with httpx.Client(base_url=server.base_url, timeout=20) as http:
            put_record(http, key, REF, "b", b'{"b": 2}')

    return _closure_while_open(server, in_transaction, go_on, send)


def test_a_closure_racing_a_records_new_subject_key_leaves_no_live_key(
    server: ServerThread, new_tenant: Callable[[], Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = new_tenant()
    assert len(_record_write_racing_closure(server, tenant, monkeypatch)) == 1
    assert _status(server.database_url, tenant) == "closed"
    assert _live_subject_keys(server.database_url, tenant) == 0


def test_the_deletion_check_names_a_closed_tenants_live_subject_key(
    server: ServerThread, new_tenant: Callable[[], Tenant]
) -> None:
    """What the race above left (before the closure waited for the KEK's writers), or a
    defect like it: a closed tenant with a subject key still live. Made here by putting
    one key's wrapped bytes back after a closure that destroyed everything."""
    tenant = new_tenant()
    _erased_and_closing(server, tenant, erased=False)
    assert close_due_tenants(server) >= 1
    assert _status(server.database_url, tenant) == "closed"
    assert _live_subject_keys(server.database_url, tenant) == 0
    run_worker_pass(server)  # the closure's ledger rows published: no lag to report
    assert not [v for v in deletion_violations(server) if v.tenant_id == tenant.id]

    async def revive_one() -> None:
        conn = await asyncpg.connect(server.database_url)
        try:
            await conn.execute(
                "UPDATE subject_keys SET wrapped_key = '\\x00'::bytea, destroyed_at = NULL"
                " WHERE id = (SELECT id FROM subject_keys WHERE tenant_id = $1 LIMIT 1)",
                tenant.id,
            )
        finally:
            await conn.close()

    asyncio.run(revive_one())
    found = [
        v
        for v in deletion_violations(server)
        if v.tenant_id == tenant.id and v.kind == "closed_tenant_keys_live"
    ]
    assert len(found) == 1 and "1 subject keys" in found[0].detail
