"""What a restored backup keeps of the controls tightened since it was taken (migration
0027, vault/services/ledger_controls.py), beyond the red team's cases
(tests/integration/test_redteam3_restore.py): a scheduled erasure lost with the database
comes back and runs; a closure cancelled since stays cancelled; and starting twice on the
restored database (a vault killed during its first start) changes nothing the first
start did not: one journal row per restored change, the same state."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.api.helpers import auth, create_key
from tests.jobs import run_worker_pass
from tests.support import empty_database, make_tenant, running_server
from vault.blobs.filesystem import FilesystemBlobStore
from vault.config import Settings
from vault.db.database import Database
from vault.db.embedded import postgres_bin_dir
from vault.runtime import operator_context
from vault.services.ledger import reconcile_on_start
from vault.services.ledger_watermark import watermark_for
from vault.services.receipts import ReceiptSigner
from workers.ledger import publish_pending

PG_BIN = postgres_bin_dir()


def _pg(tool: str, *args: str) -> None:
    subprocess.run([str(PG_BIN / tool), *args], check=True, capture_output=True, timeout=120)


def _restore(pg_admin_url: str, dump: Path) -> str:
    url = empty_database(pg_admin_url)
    _pg("pg_restore", "-d", url, str(dump))
    return url


async def _rows(url: str, query: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(query)]
    finally:
        await conn.close()


def _publish(settings: Settings, url: str) -> None:
    """The ledger publisher's round (the servers here run no jobs)."""

    async def run() -> None:
        async with operator_context(settings, url) as ctx:
            signer = await ReceiptSigner.load_or_create(ctx.db, ctx.root)
            watermark = watermark_for(ctx.root, ctx.blobs)
            await publish_pending(ctx.db, ctx.blobs, 0, watermark, signer=signer)

    asyncio.run(run())


def _graced(http: httpx.Client, tenant: Any) -> None:
    graced = http.patch(
        "/v1/tenant/settings", json={"erasure_grace_hours": 24}, headers=tenant.auth()
    )
    assert graced.status_code == 200, graced.text


def test_a_scheduled_erasure_lost_with_the_database_comes_back_and_runs(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """Requested after the backup (in its grace period, not yet run) and published by the
    ledger publisher's next round: the restored vault has it, scheduled as it was, and
    the executor shreds the subject's data once the grace period is over."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "nightly.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        _graced(http, tenant)
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        written = http.put(
            "/v1/subjects/leaver/records/profile?category=account",
            json={"v": 1},
            headers=auth(app),
        )
        assert written.status_code == 201, written.text
        _pg("pg_dump", "-Fc", "-f", str(dump), "-d", url)
        asked = http.post("/v1/subjects/leaver/erasure", headers=auth(privacy)).json()
        assert asked["status"] == "scheduled", asked
    _publish(private_vault, url)

    restored_url = _restore(pg_admin_url, dump)
    restored = Settings(data_dir=private_vault.data_dir, database_url=restored_url)
    with running_server(restored, restored_url, run_jobs=False) as server, server.client() as http:
        shown = http.get(f"/v1/erasures/{asked['id']}", headers=auth(privacy)).json()
        before_grace = http.get("/v1/subjects/leaver/records/profile", headers=auth(app))
        run_worker_pass(server, days=2)
        after = http.get(f"/v1/erasures/{asked['id']}", headers=auth(privacy)).json()
        gone = http.get("/v1/subjects/leaver/records/profile", headers=auth(app))
    assert shown["status"] == "scheduled", shown
    assert shown["not_before"] == asked["not_before"]
    # Under an erasure instruction the generation is no longer readable, as before the loss.
    assert before_grace.status_code != 200, before_grace.text
    assert after["status"] == "completed", after
    assert gone.status_code != 200, gone.text


def test_a_closure_cancelled_since_the_backup_stays_cancelled(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """The backup holds a requested closure; the tenant cancels it: the restored vault
    does not close the tenant after all."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "nightly.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        asked = http.post(
            "/v1/tenant/closure", json={"reason": "offboarding"}, headers=tenant.auth()
        )
        assert asked.status_code == 202, asked.text
        _pg("pg_dump", "-Fc", "-f", str(dump), "-d", url)
        cancelled = http.delete("/v1/tenant/closure", headers=tenant.auth())
        assert cancelled.status_code == 200, cancelled.text

    restored_url = _restore(pg_admin_url, dump)
    restored = Settings(data_dir=private_vault.data_dir, database_url=restored_url)
    with running_server(restored, restored_url, run_jobs=False) as server, server.client() as http:
        shown = http.get("/v1/tenant", headers=tenant.auth()).json()
    assert shown["status"] == "active", shown


def test_replaying_the_controls_twice_changes_nothing_more(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """Since the backup: a release request withdrawn, an erasure cancelled, a key
    revoked, a closure requested. Two starts on the restored database: each change is
    restored once (one journal row each), and the state is the same."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "nightly.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        _graced(http, tenant)
        compliance = create_key(http, tenant, ["compliance"])
        privacy = create_key(http, tenant, ["erasure"])
        leaked = create_key(http, tenant, ["read"])
        hold = http.post(
            "/v1/holds",
            json={"subject_ref": "party", "reason": "litigation", "reference": "CASE-9"},
            headers=auth(compliance),
        ).json()
        asked = http.post(
            f"/v1/holds/{hold['id']}/release", json={"reason": "closed"}, headers=auth(compliance)
        )
        assert asked.status_code == 202, asked.text
        erasure = http.post("/v1/subjects/someone/erasure", headers=auth(privacy)).json()
        _pg("pg_dump", "-Fc", "-f", str(dump), "-d", url)
        for response in (
            http.delete(f"/v1/holds/{hold['id']}/release", headers=auth(compliance)),
            http.post(f"/v1/erasures/{erasure['id']}/cancel", headers=auth(privacy)),
            http.delete(f"/v1/api-keys/{leaked['id']}", headers=tenant.auth()),
            http.post("/v1/tenant/closure", json={"reason": "bye"}, headers=tenant.auth()),
        ):
            assert response.status_code in (200, 202, 204), response.text

    restored_url = _restore(pg_admin_url, dump)
    blobs = FilesystemBlobStore(private_vault.data_dir.resolve() / "blobs")
    state_query = (
        "SELECT (SELECT release_requested_at IS NULL FROM holds), "
        "(SELECT status FROM erasures), "
        "(SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = '" + leaked["id"] + "'), "
        "(SELECT status || closure_due_at::text FROM tenants WHERE id = '"
        + str(tenant.id) + "'), "
        "(SELECT count(*) FROM hold_events WHERE reason = 'restored from the shred ledger'), "
        "(SELECT count(*) FROM erasure_events WHERE detail = 'restored from the shred ledger')"
    )  # fmt: skip

    async def start() -> list[tuple[Any, ...]]:
        db = await Database.connect(restored_url, max_size=4)
        try:
            await reconcile_on_start(db, blobs)
        finally:
            await db.close()
        return await _rows(restored_url, state_query)

    first = asyncio.run(start())
    second = asyncio.run(start())
    assert first == second
    ((withdrawn, erasure_status, revoked, closure, hold_rows, erasure_rows),) = first
    assert withdrawn and erasure_status == "cancelled" and revoked
    assert closure.startswith("closing")
    assert (hold_rows, erasure_rows) == (1, 1)


def test_an_erasure_scheduled_in_the_backup_that_ran_since_keeps_what_it_stated(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """The backup has the erasure scheduled; after it, statutory retention for billing is
    raised to 400 days and the erasure runs (held, billing retained for 400 days). The
    restored vault takes the state it ran into (held, its items) from the ledger instead
    of running it again on the restored 10 days: 30 days on, the invoice is still kept."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "nightly.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        capped = http.patch(
            "/v1/tenant/settings",
            json={"retention": {"billing": {"keep_at_least_days": 10}}},
            headers=tenant.auth(),
        )
        assert capped.status_code == 200, capped.text
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        compliance = create_key(http, tenant, ["compliance"])
        written = http.put(
            "/v1/subjects/payer/records/invoice?category=billing",
            json={"n": 1},
            headers=auth(app),
        )
        assert written.status_code == 201, written.text
        asked = http.post("/v1/subjects/payer/erasure", headers=auth(privacy)).json()
        _pg("pg_dump", "-Fc", "-f", str(dump), "-d", url)  # the erasure: scheduled
        raised = http.patch(
            "/v1/tenant/settings",
            json={"retention": {"billing": {"keep_at_least_days": 400}}},
            headers=tenant.auth(),
        )
        assert raised.status_code == 200, raised.text
        run_worker_pass(server)
        ran = http.get(f"/v1/erasures/{asked['id']}", headers=auth(privacy)).json()
        assert ran["status"] == "held", ran

    restored_url = _restore(pg_admin_url, dump)
    restored = Settings(data_dir=private_vault.data_dir, database_url=restored_url)
    with running_server(restored, restored_url, run_jobs=False) as server, server.client() as http:
        replayed = http.get(f"/v1/erasures/{asked['id']}", headers=auth(privacy)).json()
        run_worker_pass(server, days=30)
        kept = http.get("/v1/subjects/payer/records/invoice", headers=auth(compliance))
        after = http.get(f"/v1/erasures/{asked['id']}", headers=auth(privacy)).json()
    assert replayed["status"] == "held", replayed
    assert replayed["retained"] == ran["retained"]
    assert kept.status_code == 200, kept.text
    assert after["status"] == "held", after


def test_a_closure_requested_again_since_the_backup_stands_as_requested_again(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """The backup holds a requested closure; the tenant cancels it and requests it again:
    the restored vault keeps the newer request (its due date), not the cancelled one."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "nightly.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        first = http.post("/v1/tenant/closure", json={"reason": "a"}, headers=tenant.auth())
        assert first.status_code == 202, first.text
        _pg("pg_dump", "-Fc", "-f", str(dump), "-d", url)
        cancelled = http.delete("/v1/tenant/closure", headers=tenant.auth())
        assert cancelled.status_code == 200, cancelled.text
        again = http.post("/v1/tenant/closure", json={"reason": "b"}, headers=tenant.auth())
        assert again.status_code == 202, again.text

    restored_url = _restore(pg_admin_url, dump)
    restored = Settings(data_dir=private_vault.data_dir, database_url=restored_url)
    with running_server(restored, restored_url, run_jobs=False) as server, server.client() as http:
        shown = http.get("/v1/tenant", headers=tenant.auth()).json()
    assert shown["status"] == "closing", shown
    assert shown["closure_due_at"] == again.json()["closure_due_at"]
    assert again.json()["closure_due_at"] != first.json()["closure_due_at"]
