"""A read holds its data key from the statement that finds the artefact (issue 19, fourth
round, migration 0032): a round trip fewer per read, and the deletion guarantee
unchanged. A read answered in one message holds it until its answer is out (migration
0035; a stalled one is cut: test_redteam6_seek_outlives_erasure.py), and its access-log
commit confirms the hold. An erasure still completes only once no transfer holds its keys
(test_completion_waits_for_transfers.py); here: the hold is taken only while the key
chain is live, and no read, whole, ranged, streamed, refused or HEAD, leaves a row behind
it once it has ended.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from tests.api.helpers import artefact_url, auth, create_key, subject_url, uploaded, wait_for
from tests.jobs import run_worker_pass
from tests.support import ServerThread, Tenant, make_tenant, private_server

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def vault(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with private_server(pg_admin_url, tmp_path_factory.mktemp("read-holds")) as server:
        yield server


def _query(server: ServerThread, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(server.database_url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def _held_rows(server: ServerThread, tenant: Tenant) -> int:
    rows = _query(server, "SELECT count(*) FROM transfer_keys WHERE tenant_id = $1", tenant.id)
    return int(rows[0][0])


def test_no_read_leaves_a_hold_behind(vault: ServerThread) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        small = uploaded(http, app, "viewer", os.urandom(200_000))
        large = uploaded(http, app, "viewer", os.urandom(3 * MIB))
        small_url = artefact_url("viewer", small["id"], "content")
        large_url = artefact_url("viewer", large["id"], "content")
        answers = [
            http.get(small_url, headers={**auth(app), "Range": "bytes=1000-66535"}),
            http.get(small_url, headers=auth(app)),
            http.get(large_url, headers={**auth(app), "Range": "bytes=1048000-1114000"}),
            http.get(large_url, headers=auth(app)),  # streamed: more than one message
            http.head(small_url, headers=auth(app)),
            http.get(small_url, headers={**auth(app), "Range": "bytes=900000-"}),  # 416
        ]
        assert [a.status_code for a in answers] == [206, 200, 206, 200, 200, 416]
        assert len(answers[3].content) == 3 * MIB
        # Each transfer releases its hold once its answer is out: just after the client
        # has it, not before.
        released = wait_for(lambda: _held_rows(vault, tenant) == 0, timeout=5, interval=0.05)
        # Nothing holds the keys, so an erasure completes in the first pass.
        privacy = create_key(http, tenant, ["erasure"])
        erasure = http.post(subject_url("viewer", "erasure"), headers=auth(privacy))
        assert erasure.status_code == 202, erasure.text
        run_worker_pass(vault)
        status = http.get(f"/v1/erasures/{erasure.json()['id']}", headers=auth(privacy))
    assert released
    assert status.json()["status"] == "completed"


def _read_held(
    server: ServerThread, tenant: Tenant, transfer: uuid.UUID
) -> tuple[bool, int, uuid.UUID]:
    """dv_artefact_read_held on the tenant's one artefact, as the vault calls it: whether
    it says the key is held, and the rows transfer_keys has for `transfer`."""
    found = _query(
        server,
        "SELECT s.ref_hash, a.id FROM artefacts a JOIN subjects s"
        " ON s.tenant_id = a.tenant_id AND s.id = a.subject_id WHERE a.tenant_id = $1",
        tenant.id,
    )
    ref_hash, artefact_id = found[0]
    row = _query(
        server,
        "SELECT * FROM dv_artefact_read_held($1, NULL, $2, $3, $4, 60, true)",
        tenant.id, ref_hash, artefact_id, transfer,
    )[0]  # fmt: skip
    rows = _query(
        server,
        "SELECT count(*) FROM transfer_keys WHERE tenant_id = $1 AND transfer_id = $2",
        tenant.id, transfer,
    )  # fmt: skip
    return bool(row["held"]), int(rows[0][0]), row["data_key_id"]


def test_the_read_statement_holds_only_a_live_key(vault: ServerThread) -> None:
    """The attack: a read that found the artefact before its key was shredded must not
    hold it (and so decrypt) after; the statement takes the hold only while the key and
    every key above it are live, as dv_transfer_hold does."""
    tenant = make_tenant(vault.settings, vault.database_url)
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        meta = uploaded(http, app, "target", os.urandom(70_000))
        live = _read_held(vault, tenant, uuid.uuid4())
        shredded = http.delete(artefact_url("target", meta["id"]), headers=auth(app))
        assert shredded.status_code == 204
        after_shred = _read_held(vault, tenant, uuid.uuid4())
        _query(vault, "DELETE FROM transfer_keys WHERE tenant_id = $1", tenant.id)
    assert live[:2] == (True, 1)
    assert after_shred[:2] == (False, 0)


def test_another_tenants_transfer_cannot_hold_through_the_statement(vault: ServerThread) -> None:
    """Two tenants: naming tenant B while reading tenant A's artefact finds nothing and
    holds nothing (row-level security under B's tenant)."""
    a = make_tenant(vault.settings, vault.database_url)
    b = make_tenant(vault.settings, vault.database_url)
    with vault.client() as http:
        app = create_key(http, a, ["ingest", "read"])
        uploaded(http, app, "theirs", os.urandom(1000))
    found = _query(
        vault,
        "SELECT s.ref_hash, a.id FROM artefacts a JOIN subjects s"
        " ON s.tenant_id = a.tenant_id AND s.id = a.subject_id WHERE a.tenant_id = $1",
        a.id,
    )
    ref_hash, artefact_id = found[0]
    transfer = uuid.uuid4()
    rows = _query(
        vault,
        "SELECT * FROM dv_artefact_read_held($1, NULL, $2, $3, $4, 60, true)",
        b.id, ref_hash, artefact_id, transfer,
    )  # fmt: skip
    held = _query(vault, "SELECT count(*) FROM transfer_keys WHERE transfer_id = $1", transfer)
    assert rows == []
    assert held[0][0] == 0


def _log_confirming(
    server: ServerThread, tenant: Tenant, transfer: uuid.UUID, data_key: uuid.UUID
) -> list[asyncpg.Record]:
    """One access-log row committed with the confirmation of `transfer`'s hold on
    `data_key`, as the access-log writer sends it for a read answered in one message
    (migration 0035)."""
    return _query(
        server,
        "SELECT * FROM dv_access_log_chain_holding($1, ARRAY[now()], ARRAY['diag'],"
        " ARRAY[NULL]::uuid[], ARRAY[NULL]::text[], ARRAY[NULL]::inet[], ARRAY['\\x00'::bytea],"
        " ARRAY['GET'], ARRAY['/r'], ARRAY[206], ARRAY[0::bigint], ARRAY[65536::bigint],"
        " ARRAY[NULL]::bytea[], ARRAY[NULL]::uuid[], '{}'::uuid[], '{}'::timestamptz[],"
        " '{}'::inet[], ARRAY[$2::uuid], ARRAY[$3::uuid], 60)",
        tenant.id, transfer, data_key,
    )  # fmt: skip


def _holds_of(server: ServerThread, tenant: Tenant, transfer: uuid.UUID) -> int:
    rows = _query(
        server,
        "SELECT count(*) FROM transfer_keys WHERE tenant_id = $1 AND transfer_id = $2",
        tenant.id, transfer,
    )  # fmt: skip
    return int(rows[0][0])


def test_a_lost_hold_on_a_destroyed_key_refuses_the_access_log_commit(vault: ServerThread) -> None:
    """A seek's hold commits without its own WAL flush; the access-log commit that must
    precede its answer flushes it. If a database crash lost the hold in between and the
    key was shredded meanwhile, that commit fails (the read is answered 503) instead of
    letting plaintext out across a shred that did not wait for it; with the key still
    live (no shred yet) the read came first, the commit goes through and the hold is
    taken again. The commit never releases a hold: the answer is not out yet."""
    tenant = make_tenant(vault.settings, vault.database_url)
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        meta = uploaded(http, app, "crashed", os.urandom(70_000))
        data_key = _query(
            vault, "SELECT data_key_id FROM artefacts WHERE tenant_id = $1", tenant.id
        )[0][0]
        # Hold lost, key live: committed, and held again until the answer is out.
        lost = uuid.uuid4()
        assert len(_log_confirming(vault, tenant, lost, data_key)) == 1
        assert _holds_of(vault, tenant, lost) == 1
        # Hold there, key shredded since (the erasure waits on the hold): committed,
        # the hold still there.
        held = uuid.uuid4()
        assert _read_held(vault, tenant, held)[:2] == (True, 1)
        assert (
            http.delete(artefact_url("crashed", meta["id"]), headers=auth(app)).status_code == 204
        )
        assert len(_log_confirming(vault, tenant, held, data_key)) == 1
        assert _holds_of(vault, tenant, held) == 1
        # Hold lost, key shredded: refused, and the row is not in the log.
        with pytest.raises(asyncpg.PostgresError) as refused:
            _log_confirming(vault, tenant, uuid.uuid4(), data_key)
        logged = _query(
            vault, "SELECT count(*) FROM access_log WHERE tenant_id = $1 AND request_id = 'diag'",
            tenant.id,
        )  # fmt: skip
        _query(vault, "DELETE FROM transfer_keys WHERE tenant_id = $1", tenant.id)
    assert refused.value.sqlstate == "DV410"
    assert logged[0][0] == 2
