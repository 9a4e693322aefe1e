"""What a restored backup keeps from the shred ledger's instruction entries, at the edges:
a hold released since the backup stays released (whether the backup knew the hold or
not), replaying the entries again changes nothing, and a changed instruction entry fails
`datavault ledger verify` like a changed key entry. (The main cases, an erasure that kept
something and a hold placed since, are tests/integration/test_restore_forgets_what_is_kept.py.)"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import structlog

from tests.api.helpers import auth, create_key
from tests.jobs import run_worker_pass
from tests.support import ServerThread, empty_database, make_tenant, new_database, running_server
from vault.blobs.base import BlobStoreError
from vault.blobs.filesystem import FilesystemBlobStore
from vault.config import Settings
from vault.db.database import Database
from vault.db.embedded import postgres_bin_dir
from vault.runtime import OperatorContext, operator_context
from vault.services import ledger_inline
from vault.services.erasure_receipts import ReceiptIssuer
from vault.services.holds import Actor, HoldRequest, HoldService
from vault.services.ledger import LedgerError, reconcile_on_start
from vault.services.ledger_inline import InlineLedger
from vault.services.ledger_instructions import record_hold
from vault.services.ledger_watermark import watermark_for
from vault.services.receipts import ReceiptSigner
from vault.services.root_epochs import retire_epoch, start_new_epoch
from workers.ledger import publish_pending
from workers.ledger_compaction import compact_ledger

PG_BIN = postgres_bin_dir()


def _pg(tool: str, *args: str) -> None:
    subprocess.run([str(PG_BIN / tool), *args], check=True, capture_output=True, timeout=120)


def _restore(pg_admin_url: str, dump: Path) -> str:
    restored_url = empty_database(pg_admin_url)
    _pg("pg_restore", "-d", restored_url, str(dump))
    return restored_url


def _hold(http: httpx.Client, key: dict[str, Any], ref: str, reason: str) -> str:
    placed = http.post(
        "/v1/holds",
        json={"subject_ref": ref, "reason": reason, "reference": "CASE-1"},
        headers=auth(key),
    )
    assert placed.status_code == 201, placed.text
    return str(placed.json()["id"])


def _release(http: httpx.Client, key: dict[str, Any], hold_id: str) -> None:
    released = http.post(
        f"/v1/holds/{hold_id}/release", json={"reason": "case closed"}, headers=auth(key)
    )
    assert released.status_code == 200, released.text


async def _rows(url: str, query: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(query)]
    finally:
        await conn.close()


def test_holds_released_since_the_backup_stay_released_and_replay_is_idempotent(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "backup.dump"
    with running_server(private_vault, url) as server, server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        known = _hold(http, compliance, "known", "regulatory")  # in the backup
        _pg("pg_dump", "-Fc", "-f", str(dump), "-d", url)
        _release(http, compliance, known)
        unknown = _hold(http, compliance, "unknown", "regulatory")  # placed since
        _release(http, compliance, unknown)
        standing = _hold(http, compliance, "standing", "litigation")  # placed since
        # A tenant created since, with a hold: the backup knows neither, nor its data.
        newcomer = make_tenant(private_vault, url)
        _hold(http, create_key(http, newcomer, ["compliance"]), "anyone", "regulatory")

    restored_url = _restore(pg_admin_url, dump)
    blobs = FilesystemBlobStore(private_vault.data_dir.resolve() / "blobs")

    async def replay_twice() -> None:
        # Two starts before the publisher moved the database's head past the entries (a
        # vault killed during its first start): the second replay finds it all done.
        db = await Database.connect(restored_url, max_size=4)
        try:
            await reconcile_on_start(db, blobs)
            await reconcile_on_start(db, blobs)
        finally:
            await db.close()

    asyncio.run(replay_twice())
    holds = asyncio.run(
        _rows(restored_url, "SELECT id::text, released_at IS NOT NULL FROM holds ORDER BY 1")
    )
    journal = asyncio.run(
        _rows(
            restored_url,
            "SELECT hold_id::text, action FROM hold_events "
            "WHERE reason = 'restored from the shred ledger' ORDER BY 1, seq",
        )
    )
    assert sorted(holds) == sorted([(known, True), (unknown, True), (standing, False)])
    assert sorted(journal) == sorted(
        [(known, "released"), (unknown, "placed"), (unknown, "released"), (standing, "placed")]
    )

    restored = Settings(data_dir=private_vault.data_dir, database_url=restored_url)
    with running_server(restored, restored_url) as server, server.client() as http:
        shown = {
            hold_id: http.get(f"/v1/holds/{hold_id}", headers=auth(compliance)).json()
            for hold_id in (known, unknown, standing)
        }
    assert not shown[known]["active"] and shown[known]["released_at"] is not None
    assert not shown[unknown]["active"] and shown[unknown]["released_at"] is not None
    assert shown[standing]["active"] and shown[standing]["reason"] == "litigation"


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "DATAVAULT_DATA_DIR": str(settings.data_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "vault", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_changed_instruction_entry_fails_ledger_verify(private_vault: Settings) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    with running_server(private_vault, url) as server, server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        hold_id = _hold(http, compliance, "defendant", "litigation")
        _hold(http, compliance, "witness", "regulatory")  # a later entry links to it
    assert _cli(private_vault, "ledger", "verify").returncode == 0

    ledger = sorted((private_vault.data_dir / "blobs" / "ledger").iterdir())
    documents = [json.loads(path.read_bytes()) for path in ledger]
    index = next(
        i
        for i, document in enumerate(documents)
        if any(
            e.get("fact", {}).get("hold_id") == hold_id for e in document["ledger_entry"]["entries"]
        )
    )
    assert index < len(ledger) - 1
    original = ledger[index].read_bytes()
    entry = next(e for e in documents[index]["ledger_entry"]["entries"] if e["key_kind"] == "hold")
    # Someone with write access to the bucket backdates the hold's release.
    entry["fact"]["released_at"] = "2026-01-01T00:00:00+00:00"
    ledger[index].write_text(json.dumps(documents[index], sort_keys=True, separators=(",", ":")))
    changed = _cli(private_vault, "ledger", "verify")
    assert changed.returncode == 1 and "changed" in changed.stdout, changed.stdout
    ledger[index].write_bytes(original)
    assert _cli(private_vault, "ledger", "verify").returncode == 0


def _status_after_a_pass(
    server: ServerThread, http: httpx.Client, key: dict[str, Any], erasure_id: str, wanted: str
) -> None:
    run_worker_pass(server)  # the executor and the shred ledger, as their next round would
    shown = http.get(f"/v1/erasures/{erasure_id}", headers=auth(key)).json()
    assert shown["status"] == wanted, shown


def test_a_restored_held_erasure_is_shredded_when_due_and_later_writes_are_a_new_life(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "before-erasure.dump"
    with running_server(private_vault, url) as server, server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        compliance = create_key(http, tenant, ["compliance"])
        written = http.put(
            "/v1/subjects/payer/records/invoice?category=billing",
            json={"iban": "DE00 1234"},
            headers=auth(app),
        )
        assert written.status_code == 201, written.text
        _pg("pg_dump", "-Fc", "-f", str(dump), "-d", url)
        erasure_id = http.post("/v1/subjects/payer/erasure", headers=auth(privacy)).json()["id"]
        _status_after_a_pass(server, http, privacy, erasure_id, "held")

    restored_url = _restore(pg_admin_url, dump)
    restored = Settings(data_dir=private_vault.data_dir, database_url=restored_url)
    with running_server(restored, restored_url) as server, server.client() as http:
        kept = http.get("/v1/subjects/payer/records/invoice", headers=auth(compliance))
        # Data written since is a new life of the subject, the application's again.
        rewritten = http.put(
            "/v1/subjects/payer/records/profile?category=account",
            json={"plan": "basic"},
            headers=auth(app),
        )
        reread = http.get("/v1/subjects/payer/records/profile", headers=auth(app))
        still_kept = http.get("/v1/subjects/payer/records/invoice", headers=auth(app))
        # Past the statutory retention (7 years) what the erasure kept is shredded.
        run_worker_pass(server, days=8 * 366)
        shown = http.get(f"/v1/erasures/{erasure_id}", headers=auth(privacy)).json()
    assert kept.status_code == 200, kept.text
    assert rewritten.status_code == 201, rewritten.text
    assert reread.status_code == 200, reread.text
    assert still_kept.status_code == 403  # what the erasure kept is compliance-only
    assert shown["status"] == "completed", shown
    assert shown["retained"] == []
    assert {i["category"] for i in shown["shredded"]} == {"billing", "identity"}


async def _place_recorded_hold(ctx: OperatorContext, tenant_id: uuid.UUID) -> uuid.UUID:
    """A tenant-wide hold with its instruction entry, published as the publisher does."""
    hold_id = uuid.uuid4()
    async with ctx.db.tenant_tx(tenant_id) as conn:
        await conn.execute(
            "INSERT INTO holds (tenant_id, id, reason, reference, placed_by) "
            "VALUES ($1, $2, 'regulatory', 'CASE-9', $3)",
            tenant_id, hold_id, uuid.uuid4(),
        )  # fmt: skip
        await record_hold(conn, tenant_id, hold_id)
    signer = await ReceiptSigner.load_or_create(ctx.db, ctx.root)
    watermark = watermark_for(ctx.root, ctx.blobs)
    assert await publish_pending(ctx.db, ctx.blobs, 0, watermark, signer=signer) == 1
    return hold_id


def test_compaction_folds_instruction_entries_only_past_what_a_servable_backup_needs(
    pg_admin_url: str, tmp_path: Path
) -> None:
    """Instruction entries fold by the rule keys fold by: published before the oldest live
    epoch began, every older epoch retired. A backup from before that is refused (nothing
    in it opens); one from since replays the instruction entries after its head."""
    url = new_database(pg_admin_url)
    settings = Settings(data_dir=tmp_path / "data", database_url=url, backup_retention_days=0)
    tenant_id = make_tenant(settings, url).id
    old_backup, new_backup = tmp_path / "epoch-1.dump", tmp_path / "epoch-2.dump"

    async def build() -> tuple[uuid.UUID, int]:
        async with operator_context(settings, url) as ctx:
            # The receipt key (which signs checkpoints) exists before either backup.
            issuer = await ReceiptIssuer.for_deployment(ctx.db, ctx.root, ctx.settings)
            await _place_recorded_hold(ctx, tenant_id)
            _pg("pg_dump", "-Fc", "-f", str(old_backup), "-d", url)
            await _place_recorded_hold(ctx, tenant_id)
            await start_new_epoch(ctx.db, ctx.keyring, ctx.root, propagation_seconds=0)
            _pg("pg_dump", "-Fc", "-f", str(new_backup), "-d", url)
            since = await _place_recorded_hold(ctx, tenant_id)
            await retire_epoch(ctx.db, ctx.root, 1, 0)
            report = await compact_ledger(
                ctx.db, ctx.blobs, issuer, watermark=watermark_for(ctx.root, ctx.blobs)
            )
            return since, report.folded_objects

    since, folded = asyncio.run(build())
    assert folded == 2  # both holds recorded before epoch 2 began
    assert _cli(settings, "ledger", "verify").returncode == 0
    blobs = FilesystemBlobStore(settings.data_dir.resolve() / "blobs")

    async def start(restored_url: str) -> list[tuple[Any, ...]]:
        db = await Database.connect(restored_url, max_size=4)
        try:
            await reconcile_on_start(db, blobs)
        finally:
            await db.close()
        return await _rows(restored_url, "SELECT id FROM holds ORDER BY placed_at")

    with pytest.raises(LedgerError, match="older than the shred ledger's checkpoint"):
        asyncio.run(start(_restore(pg_admin_url, old_backup)))
    assert asyncio.run(start(_restore(pg_admin_url, new_backup)))[-1] == (since,)


def test_a_hold_change_answers_when_its_ledger_entry_cannot_be_written_yet(
    private_vault: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blob store fails or hangs: the hold is placed (it holds in PostgreSQL), the
    answer says so within the bound, the log names the deferral (ids only), and the
    publisher's next round writes the entry."""
    url = private_vault.database_url or ""
    tenant_id = make_tenant(private_vault, url).id
    monkeypatch.setattr(ledger_inline, "LEDGER_WAIT_SECONDS", 1.0)

    async def fail() -> object:
        raise BlobStoreError("the store is down")

    async def hang() -> object:
        await asyncio.sleep(3600)
        return None

    async def run() -> tuple[int, int]:
        async with operator_context(private_vault, url) as ctx:
            request = HoldRequest(None, None, "regulatory", "CASE-3", None, None)
            actor = Actor(uuid.uuid4(), None)
            await HoldService(ctx.db, InlineLedger(fail)).place(tenant_id, request, actor)
            started = time.monotonic()
            await HoldService(ctx.db, InlineLedger(hang)).place(tenant_id, request, actor)
            assert time.monotonic() - started < 5
            async with ctx.db.tenant_tx(tenant_id) as conn:
                pending = await conn.fetchval(
                    "SELECT count(*) FROM ledger_outbox WHERE key_kind = 'hold' "
                    "AND published_at IS NULL"
                )
            signer = await ReceiptSigner.load_or_create(ctx.db, ctx.root)
            published = await publish_pending(ctx.db, ctx.blobs, 0, signer=signer)
            return int(pending), published

    with structlog.testing.capture_logs() as logs:
        pending, published = asyncio.run(run())
    deferred = [entry for entry in logs if entry["event"] == "hold_ledger_entry_deferred"]
    assert [d["error_type"] for d in deferred] == ["BlobStoreError", "TimeoutError"]
    assert all(
        set(d) <= {"event", "log_level", "tenant_id", "hold_id", "error_type"} for d in deferred
    )
    assert pending == 2 and published == 2
