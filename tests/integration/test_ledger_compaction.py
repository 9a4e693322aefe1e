"""Shred-ledger compaction: objects that no restorable backup can need fold into a signed
checkpoint, and the ledger still proves what it proved. Verify still catches a cut or
changed ledger, a forged, removed or overreaching checkpoint; a restored backup still
re-destroys every key destroyed since; a compaction stopped anywhere leaves a ledger that
verifies and is finished by the next pass. The deployments here are built in-process
(outbox rows published as the publisher does), with a backup retention of 0 days so that
an epoch retires at once."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest

from crypto import signing
from tests.api.helpers import auth, create_key, put_record, record_url, subject_url
from tests.jobs import run_worker_pass
from tests.seaweed import SeaweedS3
from tests.support import (
    ServerThread,
    empty_database,
    make_tenant,
    new_database,
    private_server,
    running_server,
)
from vault.blobs.base import BlobStoreError
from vault.blobs.filesystem import FilesystemBlobStore
from vault.config import Settings
from vault.db.database import Database
from vault.db.embedded import postgres_bin_dir
from vault.observability.metrics import Metrics
from vault.runtime import OperatorContext, operator_context
from vault.services.erasure_receipts import ReceiptIssuer
from vault.services.ledger import LedgerSummary, locate_head, reconcile_on_start, verify_ledger
from vault.services.ledger_checkpoint import CHECKPOINT_PREFIX, checkpoint_key
from vault.services.ledger_objects import LedgerError, entry_key
from vault.services.ledger_watermark import watermark_for
from vault.services.receipts import ReceiptSigner, key_id_for, sign_statement
from vault.services.root_epochs import list_epochs, retire_epoch, start_new_epoch
from workers import ledger_compaction as compaction
from workers.ledger import publish_pending
from workers.ledger_compaction import CompactionReport, compact_ledger, compact_on_schedule
from workers.monitor import refresh_gauges

T = TypeVar("T")
PG_BIN = postgres_bin_dir()
BEFORE_EPOCH, AFTER_EPOCH = 5, 2  # ledger objects published before and after epoch 2 began


@dataclass(frozen=True)
class Deployment:
    settings: Settings
    url: str
    tenant_id: uuid.UUID

    @property
    def blobs_root(self) -> Path:
        return self.settings.data_dir.resolve() / "blobs"

    def run(self, work: Callable[[OperatorContext], Awaitable[T]]) -> T:
        async def go() -> T:
            async with operator_context(self.settings, self.url) as ctx:
                return await work(ctx)

        return asyncio.run(go())

    def ledger(self) -> list[int]:
        return sorted(int(p.stem) for p in (self.blobs_root / "ledger").iterdir())

    def checkpoints(self) -> list[Path]:
        folder = self.blobs_root / CHECKPOINT_PREFIX
        return sorted(folder.iterdir()) if folder.exists() else []

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        retention = str(self.settings.backup_retention_days)
        return subprocess.run(
            [sys.executable, "-m", "vault", *args, "--database-url", self.url,
             "--data-dir", str(self.settings.data_dir)],
            env={**os.environ, "DATAVAULT_BACKUP_RETENTION_DAYS": retention},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip


def _deployment(pg_admin_url: str, tmp_path: Path) -> Deployment:
    url = new_database(pg_admin_url)
    settings = Settings(data_dir=tmp_path / "data", database_url=url, backup_retention_days=0)
    return Deployment(settings, url, make_tenant(settings, url).id)


async def _grow(ctx: OperatorContext, tenant_id: uuid.UUID, objects: int, keys: int = 3) -> None:
    """`objects` more ledger objects of `keys` destroyed data keys each, published."""
    for _ in range(objects):
        async with ctx.db.tenant_tx(tenant_id) as conn:
            await conn.execute(
                "INSERT INTO ledger_outbox (tenant_id, key_kind, key_id, destroyed_at) "
                "SELECT $1, 'data', gen_random_uuid()::text, now() - interval '1 second' "
                "FROM generate_series(1, $2)",
                tenant_id, keys,
            )  # fmt: skip
        signer = await ReceiptSigner.load_or_create(ctx.db, ctx.root)
        watermark = watermark_for(ctx.root, ctx.blobs)
        assert await publish_pending(ctx.db, ctx.blobs, 0, watermark, signer=signer)


async def _compact(ctx: OperatorContext, **kwargs: Any) -> CompactionReport:
    issuer = await ReceiptIssuer.for_deployment(ctx.db, ctx.root, ctx.settings)
    blobs = kwargs.pop("blobs", ctx.blobs)
    return await compact_ledger(
        ctx.db, blobs, issuer, watermark=watermark_for(ctx.root, ctx.blobs), **kwargs
    )


async def _verify(ctx: OperatorContext) -> LedgerSummary:
    return await verify_ledger(ctx.db, ctx.blobs, watermark_for(ctx.root, ctx.blobs))


async def _epoch_and_retire(ctx: OperatorContext, tenant_id: uuid.UUID) -> None:
    """Epoch 2 begins after BEFORE_EPOCH objects, AFTER_EPOCH more follow, epoch 1 retires."""
    await _grow(ctx, tenant_id, BEFORE_EPOCH)
    await start_new_epoch(ctx.db, ctx.keyring, ctx.root)
    await _grow(ctx, tenant_id, AFTER_EPOCH)
    await retire_epoch(ctx.db, ctx.root, 1, 0)


def _compacted(pg_admin_url: str, tmp_path: Path) -> Deployment:
    deployment = _deployment(pg_admin_url, tmp_path)

    async def build(ctx: OperatorContext) -> None:
        await _epoch_and_retire(ctx, deployment.tenant_id)
        report = await _compact(ctx)
        assert report.checkpoints == (BEFORE_EPOCH,), report

    deployment.run(build)
    return deployment


async def _set_head(url: str, seq: int, head: bytes) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("UPDATE ledger_head SET seq = $1, entry_hash = $2", seq, head)
    finally:
        await conn.close()


def test_what_preceded_the_oldest_live_epoch_folds_into_one_checkpoint_and_verifies(
    pg_admin_url: str, tmp_path: Path
) -> None:
    deployment = _deployment(pg_admin_url, tmp_path)

    async def before_retiring(ctx: OperatorContext) -> CompactionReport:
        await _grow(ctx, deployment.tenant_id, BEFORE_EPOCH)
        await start_new_epoch(ctx.db, ctx.keyring, ctx.root)
        await _grow(ctx, deployment.tenant_id, AFTER_EPOCH)
        epochs = {e.epoch: e.ledger_seq_at_start for e in await list_epochs(ctx.db)}
        assert epochs == {1: 0, 2: BEFORE_EPOCH}  # the head before epoch 2's key existed
        return await _compact(ctx)

    early = deployment.run(before_retiring)
    assert early.folded_objects == 0 and "is retired yet" in str(early.reason)
    deployment.run(lambda ctx: retire_epoch(ctx.db, ctx.root, 1, 0))
    ledger = {n: (deployment.blobs_root / entry_key(n)).read_bytes() for n in deployment.ledger()}
    folded_bytes = sum(len(ledger[n]) for n in range(1, BEFORE_EPOCH + 1))

    dry = deployment.run(lambda ctx: _compact(ctx, dry_run=True))
    assert (dry.dry_run, dry.folded_objects, dry.folded_entries) == (True, BEFORE_EPOCH, 15)
    assert deployment.ledger() == list(range(1, 8)) and deployment.checkpoints() == []

    report = deployment.run(_compact)
    assert report.checkpoints == (BEFORE_EPOCH,) and report.removed_objects == BEFORE_EPOCH
    assert (report.folded_objects, report.folded_entries) == (BEFORE_EPOCH, 15)
    assert deployment.ledger() == [6, 7]  # published after epoch 2 began: kept
    [checkpoint] = deployment.checkpoints()
    assert checkpoint.stat().st_size < folded_bytes
    statement = json.loads(checkpoint.read_bytes())["checkpoint"]
    assert statement["through"] == {"seq": 5, "head": hashlib.sha256(ledger[5]).hexdigest()}
    assert statement["after"] == {"seq": 0, "head": bytes(32).hex()}

    summary = deployment.run(_verify)
    assert (summary.objects, summary.entries, summary.checkpoints) == (2, 6, 1)
    assert (summary.folded_through, summary.folded_entries) == (BEFORE_EPOCH, 15)
    verify = deployment.cli("ledger", "verify", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads(verify.stdout)["folded_through"] == BEFORE_EPOCH

    # However late it runs, nothing published after epoch 2 began folds while epoch 2
    # lives: a backup from epoch 2 may still need it.
    later = deployment.run(lambda ctx: _compact(ctx, now=datetime.now(UTC) + timedelta(days=900)))
    assert later.folded_objects == 0 and "epoch 2" in str(later.reason)
    assert deployment.ledger() == [6, 7]

    snapshot = deployment.run(lambda ctx: refresh_gauges(ctx.db, Metrics()))
    assert (snapshot.ledger_folded_through, snapshot.ledger_objects) == (BEFORE_EPOCH, 2)
    # Start-up (a restart) needs nothing that was folded.
    assert deployment.run(lambda ctx: reconcile_on_start(ctx.db, ctx.blobs)) == 0


def test_a_database_older_than_the_checkpoint_is_refused_and_one_at_it_starts(
    pg_admin_url: str, tmp_path: Path
) -> None:
    """A backup taken before epoch 2 began (its head below the checkpoint) is from an epoch
    whose root key is gone: nothing in it opens, and the entries it would need are
    folded, so start-up refuses it. One taken at the checkpoint or later starts."""
    deployment = _compacted(pg_admin_url, tmp_path)
    checkpoint = json.loads(deployment.checkpoints()[0].read_bytes())["checkpoint"]
    at_checkpoint = bytes.fromhex(checkpoint["through"]["head"])

    def start() -> int:
        return deployment.run(
            lambda ctx: reconcile_on_start(ctx.db, ctx.blobs, watermark_for(ctx.root, ctx.blobs))
        )

    asyncio.run(_set_head(deployment.url, 4, bytes(32)))
    with pytest.raises(LedgerError, match="older than the shred ledger's checkpoint"):
        start()
    verify = deployment.cli("ledger", "verify")
    assert verify.returncode == 1 and "older than the shred ledger's checkpoint" in verify.stdout
    asyncio.run(_set_head(deployment.url, 5, bytes(32)))  # the head there, but changed
    with pytest.raises(LedgerError, match="changed"):
        start()
    asyncio.run(_set_head(deployment.url, 5, at_checkpoint))
    start()  # reads entries 6 and 7 (their keys were never in this database)
    assert deployment.cli("ledger", "verify").returncode == 0


def test_a_forged_changed_or_removed_checkpoint_fails_verify(
    pg_admin_url: str, tmp_path: Path
) -> None:
    deployment = _compacted(pg_admin_url, tmp_path)
    [path] = deployment.checkpoints()
    original = path.read_bytes()

    def fails(match: str) -> None:
        with pytest.raises(LedgerError, match=match):
            deployment.run(_verify)

    # A changed hash list (the signature no longer holds).
    document = json.loads(original)
    hashes = document["checkpoint"]["object_hashes"]
    document["checkpoint"]["object_hashes"] = ("B" if hashes[0] != "B" else "C") + hashes[1:]
    path.write_text(json.dumps(document))
    fails("does not verify")
    # Signed, but by a key the deployment never published.
    stranger = signing.generate_signing_key()
    forged = sign_statement(
        stranger, key_id_for(signing.public_key(stranger)), "checkpoint",
        json.loads(original)["checkpoint"],
    )  # fmt: skip
    path.write_text(json.dumps(forged))
    fails("does not verify")
    verify = deployment.cli("ledger", "verify", "--json")
    assert verify.returncode == 1 and "does not verify" in json.loads(verify.stdout)["problem"]
    # Removed: the first object kept links to a head nothing vouches for.
    path.unlink()
    fails("entry 1 is missing")
    # Put back under another name.
    (path.parent / checkpoint_key(6).removeprefix(CHECKPOINT_PREFIX)).write_bytes(original)
    fails("malformed")
    (path.parent / checkpoint_key(6).removeprefix(CHECKPOINT_PREFIX)).unlink()
    path.write_bytes(original)
    deployment.run(_verify)


def test_a_checkpoint_folding_an_entry_still_needed_is_refused_and_revives_nothing(
    pg_admin_url: str, tmp_path: Path
) -> None:
    """A checkpoint signed with the deployment's own receipt key (a bug, or a stolen key)
    that folds entry 6, published after epoch 2 began: a backup from epoch 2 could still
    need it. Verify names it; a restored backup older than it is refused rather than
    served without entry 6."""
    deployment = _compacted(pg_admin_url, tmp_path)
    [path] = deployment.checkpoints()
    six = deployment.blobs_root / entry_key(6)
    statement = json.loads(path.read_bytes())["checkpoint"]
    head_five = bytes.fromhex(statement["through"]["head"])
    head_six = hashlib.sha256(six.read_bytes()).digest()
    hashes = base64.urlsafe_b64decode(statement["object_hashes"] + "==") + head_six
    statement["object_hashes"] = base64.urlsafe_b64encode(hashes).rstrip(b"=").decode()
    statement["through"] = {"seq": 6, "head": head_six.hex()}
    statement["rule"]["ledger_seq_at_epoch_start"] = 6  # claims a later start than recorded

    async def sign(ctx: OperatorContext) -> dict[str, Any]:
        return (await ReceiptSigner.load_or_create(ctx.db, ctx.root)).sign_statement(
            "checkpoint", statement
        )

    path.unlink()
    (path.parent / checkpoint_key(6).removeprefix(CHECKPOINT_PREFIX)).write_text(
        json.dumps(deployment.run(sign))
    )
    six.unlink()
    with pytest.raises(LedgerError, match="past the ledger head when epoch 2 began"):
        deployment.run(_verify)
    asyncio.run(_set_head(deployment.url, 5, head_five))  # a backup from epoch 2
    with pytest.raises(LedgerError, match="older than the shred ledger's checkpoint"):
        deployment.run(lambda ctx: reconcile_on_start(ctx.db, ctx.blobs))


class _BreakingStore(FilesystemBlobStore):
    """The filesystem store, made to fail at one point of a compaction: the checkpoint's
    write, or after `deletes` deletions."""

    def __init__(self, root: Path, *, fail_checkpoint: bool = False, deletes: int = -1) -> None:
        super().__init__(root)
        self.fail_checkpoint = fail_checkpoint
        self.deletes = deletes

    async def put_retained(self, key: str, data: bytes, retain_until: datetime) -> bool:
        if self.fail_checkpoint and key.startswith(CHECKPOINT_PREFIX):
            raise BlobStoreError("the store went away")
        return await super().put_retained(key, data, retain_until)

    async def delete(self, key: str) -> None:
        if self.deletes == 0:
            raise BlobStoreError("the store went away")
        self.deletes -= 1
        # The removals that succeed take a while (the window widened on purpose): the
        # failing one raises first, and the pass must still wait for them before it
        # stops (a pass that stopped at once left removals running after it; under load
        # the test saw the ledger before they ended).
        await asyncio.sleep(0.2)
        await super().delete(key)


def test_a_compaction_stopped_anywhere_leaves_a_ledger_that_verifies_and_is_finished_later(
    pg_admin_url: str, tmp_path: Path
) -> None:
    deployment = _deployment(pg_admin_url, tmp_path)
    deployment.run(lambda ctx: _epoch_and_retire(ctx, deployment.tenant_id))

    # Stopped before the checkpoint was written: nothing changed.
    broken = _BreakingStore(deployment.blobs_root, fail_checkpoint=True)
    with pytest.raises(BlobStoreError):
        deployment.run(lambda ctx: _compact(ctx, blobs=broken))
    assert deployment.ledger() == list(range(1, 8)) and deployment.checkpoints() == []
    assert deployment.run(_verify).checkpoints == 0

    # Stopped after the checkpoint and two removals (one window of deletions fails).
    broken = _BreakingStore(deployment.blobs_root, deletes=2)
    with pytest.raises(BlobStoreError):
        deployment.run(lambda ctx: _compact(ctx, blobs=broken))
    assert len(deployment.checkpoints()) == 1
    left = deployment.ledger()
    assert left == [3, 4, 5, 6, 7]  # folded ones remain
    summary = deployment.run(_verify)  # each left over is checked against the checkpoint
    assert (summary.folded_through, summary.objects) == (BEFORE_EPOCH, 2)
    assert deployment.run(lambda ctx: reconcile_on_start(ctx.db, ctx.blobs)) == 0
    assert deployment.cli("ledger", "verify").returncode == 0

    # One left over, changed meanwhile: evidence, so verify fails and nothing is removed.
    leftover = deployment.blobs_root / entry_key(left[0])
    original = leftover.read_bytes()
    document = json.loads(original)
    document["ledger_entry"]["entries"][0]["key_id"] = str(uuid.uuid4())
    leftover.write_text(json.dumps(document, sort_keys=True, separators=(",", ":")))
    with pytest.raises(LedgerError, match="differs from the one a checkpoint folded"):
        deployment.run(_compact)
    assert deployment.ledger() == left
    leftover.write_bytes(original)

    # The next pass finishes it: the rest removed, no second checkpoint.
    report = deployment.run(_compact)
    assert report.checkpoints == () and report.removed_objects == len(left) - 2
    assert deployment.ledger() == [6, 7] and len(deployment.checkpoints()) == 1
    assert deployment.run(_verify).folded_through == BEFORE_EPOCH
    snapshot = deployment.run(lambda ctx: refresh_gauges(ctx.db, Metrics()))
    assert snapshot.ledger_folded_through == BEFORE_EPOCH


def _pg(tool: str, *args: str) -> None:
    subprocess.run([str(PG_BIN / tool), *args], check=True, capture_output=True, timeout=120)


def _erase_and_publish(
    vault: ServerThread, http: httpx.Client, privacy: dict[str, Any], ref: str
) -> dict[str, Any]:
    erasure = http.post(subject_url(ref, "erasure"), headers=auth(privacy)).json()
    run_worker_pass(vault)
    receipt = http.get(f"/v1/erasures/{erasure['id']}/receipt", headers=auth(privacy))
    assert receipt.status_code == 200, receipt.text
    document: dict[str, Any] = receipt.json()
    return document


def _start_check(url: str, blobs_root: Path) -> int:
    async def run() -> int:
        db = await Database.connect(url, max_size=2)
        try:
            return await reconcile_on_start(db, FilesystemBlobStore(blobs_root))
        finally:
            await db.close()

    return asyncio.run(run())


def test_receipts_and_restored_backups_across_a_compaction(
    pg_admin_url: str, tmp_path: Path
) -> None:
    """Over HTTP: a receipt issued before the compaction (its head now folded) and one after
    still verify against the ledger; a backup taken after epoch 2 began still has every
    key destroyed since destroyed again at start; one taken before is refused."""
    before_epoch, in_epoch = tmp_path / "before-epoch.dump", tmp_path / "in-epoch.dump"
    with (
        private_server(pg_admin_url, tmp_path / "data", backup_retention_days=0) as vault,
        vault.client() as http,
    ):
        tenant = make_tenant(vault.settings, vault.database_url)
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        for ref in ("early", "late", "kept"):
            assert put_record(http, app, ref, "profile", b'{"v": 1}').status_code == 201
        _pg("pg_dump", "-Fc", "-f", str(before_epoch), "-d", vault.database_url)
        early = _erase_and_publish(vault, http, privacy, "early")
        deployment = Deployment(vault.settings, vault.database_url, tenant.id)
        deployment.run(lambda ctx: start_new_epoch(ctx.db, ctx.keyring, ctx.root))
        _pg("pg_dump", "-Fc", "-f", str(in_epoch), "-d", vault.database_url)
        late = _erase_and_publish(vault, http, privacy, "late")
        assert put_record(http, app, "kept", "profile", b'{"v": 2}').status_code == 200
        run_worker_pass(vault)  # the replaced version's key, published
        deployment.run(lambda ctx: retire_epoch(ctx.db, ctx.root, 1, 0))
        report = deployment.run(_compact)
        assert report.folded_objects >= 1
        assert early["receipt"]["ledger"]["seq"] <= report.folded_through
        assert late["receipt"]["ledger"]["seq"] > report.folded_through
        assert all(e["receipt"]["ledger"]["seq"] != 0 for e in (early, late))

        files = {}
        for name, document in (("early", early), ("late", late)):
            files[name] = tmp_path / f"{name}.json"
            files[name].write_text(json.dumps(document))
        verify = deployment.cli(
            "ledger", "verify", "--json", "--receipt", str(files["early"]),
            "--receipt", str(files["late"]),
        )  # fmt: skip
        assert verify.returncode == 0, verify.stdout + verify.stderr
        shown = json.loads(verify.stdout)["receipts"]
        assert [(r["ok"], r["found_in"]) for r in shown] == [(True, "checkpoint"), (True, "entry")]

        # A receipt whose head was changed no longer verifies; one signed by the deployment
        # naming a head the ledger never had is not shown by the ledger.
        changed = json.loads(json.dumps(early))
        changed["receipt"]["ledger"]["head"] = "00" * 32
        (tmp_path / "changed.json").write_text(json.dumps(changed))

        async def sign(ctx: OperatorContext) -> dict[str, Any]:
            signer = await ReceiptSigner.load_or_create(ctx.db, ctx.root)
            return signer.sign(changed["receipt"])

        (tmp_path / "wrong-head.json").write_text(json.dumps(deployment.run(sign)))
        for name, problem in (("changed", "signature"), ("wrong-head", "not the one named")):
            refused = deployment.cli(
                "ledger", "verify", "--receipt", str(tmp_path / f"{name}.json")
            )
            assert refused.returncode == 1 and "NOT SHOWN" in refused.stdout, refused.stdout
            assert problem in refused.stdout
        blobs_root = deployment.blobs_root

    # Restore the backup taken after epoch 2 began: start-up destroys again what was
    # erased and replaced since, from the entries the compaction kept.
    restored = empty_database(pg_admin_url)
    _pg("pg_restore", "-d", restored, str(in_epoch))
    settings = Settings(data_dir=tmp_path / "data", database_url=restored, backup_retention_days=0)
    with running_server(settings, restored, run_jobs=False) as server, server.client() as http:
        gone = http.get(record_url("late", "profile"), headers=auth(app))
        replaced = http.get(record_url("kept", "profile"), headers=auth(app))
        erased_before = http.get(record_url("early", "profile"), headers=auth(app))
    assert gone.status_code in (404, 410)
    assert replaced.status_code in (404, 410) and b'"v": 1' not in replaced.content
    assert erased_before.status_code in (404, 410)

    # The backup from before epoch 2: refused (its keys lie under epoch 1, destroyed).
    older = empty_database(pg_admin_url)
    _pg("pg_restore", "-d", older, str(before_epoch))
    with pytest.raises(LedgerError, match="older than the shred ledger's checkpoint"):
        _start_check(older, blobs_root)


def test_on_an_object_lock_bucket_the_checkpoint_is_locked_and_folded_entries_leave_the_listing(
    pg_admin_url: str, tmp_path: Path, seaweed_s3: SeaweedS3
) -> None:
    bucket = f"locked-{uuid.uuid4().hex[:10]}"
    seaweed_s3.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    url = new_database(pg_admin_url)
    base = Settings(data_dir=tmp_path / "data", backup_retention_days=0)
    settings = seaweed_s3.vault_settings(base, url, bucket)
    deployment = Deployment(settings, url, make_tenant(settings, url).id)

    async def build(ctx: OperatorContext) -> tuple[CompactionReport, LedgerSummary]:
        await _epoch_and_retire(ctx, deployment.tenant_id)
        return await _compact(ctx), await _verify(ctx)

    report, summary = deployment.run(build)
    assert report.checkpoints == (BEFORE_EPOCH,) and summary.folded_through == BEFORE_EPOCH
    client = seaweed_s3.client()
    listed = client.list_objects_v2(Bucket=bucket, Prefix="ledger/")
    assert [o["Key"] for o in listed["Contents"]] == [entry_key(6), entry_key(7)]
    retention = client.get_object_retention(Bucket=bucket, Key=checkpoint_key(BEFORE_EPOCH))
    assert retention["Retention"]["Mode"] == "COMPLIANCE"
    assert retention["Retention"]["RetainUntilDate"] > datetime.now(UTC) + timedelta(hours=23)
    # A folded entry's locked version is still there until its lock ends (the bucket's
    # lifecycle rule for noncurrent versions then removes it), under a delete marker.
    versions = client.list_object_versions(Bucket=bucket, Prefix=entry_key(1))
    assert versions.get("Versions") and versions.get("DeleteMarkers")


def test_epochs_recorded_before_the_upgrade_take_the_head_the_outbox_shows(
    pg_admin_url: str, tmp_path: Path
) -> None:
    """Migration 0022's backfill: an epoch recorded by an earlier release gets the newest
    ledger object whose rows were marked published a minute before the epoch's row, so
    nothing published around its start ever counts as before it."""
    deployment = _deployment(pg_admin_url, tmp_path)
    migration = (
        Path(__file__).resolve().parents[2] / "vault/db/migrations/0022_ledger_checkpoints.sql"
    ).read_text()
    backfill = migration[migration.index("UPDATE root_epochs") :].split(";")[0]
    started = datetime.now(UTC) + timedelta(days=1)

    async def run() -> dict[int, int | None]:
        conn = await asyncpg.connect(deployment.url)  # the owner, as a migration runs
        try:
            for seq, published in ((3, -120), (4, -30), (5, 60)):
                await conn.execute(
                    "INSERT INTO ledger_outbox (tenant_id, key_kind, key_id, destroyed_at, "
                    "published_at, ledger_seq) VALUES ($1, 'data', $2, $3, $3, $4)",
                    deployment.tenant_id, str(uuid.uuid4()),
                    started + timedelta(seconds=published), seq,
                )  # fmt: skip
            await conn.execute(
                "INSERT INTO root_epochs (epoch, started_at) VALUES (2, $1)", started
            )
            await conn.execute("UPDATE root_epochs SET ledger_seq_at_start = NULL")
            await conn.execute(backfill)
            rows = await conn.fetch("SELECT epoch, ledger_seq_at_start FROM root_epochs")
            return {r["epoch"]: r["ledger_seq_at_start"] for r in rows}
        finally:
            await conn.close()

    assert asyncio.run(run()) == {1: 0, 2: 3}


def test_the_compact_command_and_the_job_fold_nothing_from_a_ledger_that_does_not_verify(
    pg_admin_url: str, tmp_path: Path
) -> None:
    deployment = _deployment(pg_admin_url, tmp_path)
    deployment.run(lambda ctx: _epoch_and_retire(ctx, deployment.tenant_id))
    third = deployment.blobs_root / entry_key(3)
    saved = third.read_bytes()
    third.unlink()
    broken = deployment.cli("ledger", "compact", "--json")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "entry 3 is missing" in json.loads(broken.stdout)["problem"]
    metrics = Metrics()

    async def job(ctx: OperatorContext) -> None:
        issuer = await ReceiptIssuer.for_deployment(ctx.db, ctx.root, ctx.settings)
        await compact_on_schedule(ctx.db, ctx.blobs, issuer, None, metrics)

    with pytest.raises(LedgerError, match="entry 3 is missing"):
        deployment.run(job)
    assert b'datavault_integrity_failures_total{kind="shred_ledger"} 1.0' in metrics.render()
    assert deployment.checkpoints() == [] and deployment.ledger() == [1, 2, 4, 5, 6, 7]
    third.write_bytes(saved)

    dry = deployment.cli("ledger", "compact", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) | {"reason": None} == {
        "ok": True, "dry_run": True, "checkpoints": [BEFORE_EPOCH],
        "folded_objects": BEFORE_EPOCH, "folded_entries": 15,
        "removed_objects": BEFORE_EPOCH, "folded_through": BEFORE_EPOCH, "reason": None,
    }  # fmt: skip
    assert deployment.checkpoints() == []
    done = deployment.cli("ledger", "compact")
    assert done.returncode == 0 and "folded 5 ledger objects (15 destroyed keys)" in done.stdout
    deployment.run(job)  # the job's next pass: nothing left
    assert b"datavault_ledger_folded_objects_total 0.0" in metrics.render()
    again = deployment.cli("ledger", "compact")
    assert again.returncode == 0 and "nothing to fold: folded through entry 5" in again.stdout


class _BeforeCompactionStore(FilesystemBlobStore):
    """The store as a verify that began just before a compaction saw it: its first
    listings predate the checkpoint, its reads come after the folded objects went."""

    def __init__(self, root: Path, stale_ledger: list[str]) -> None:
        super().__init__(root)
        self.stale: dict[str, list[list[str]]] = {
            CHECKPOINT_PREFIX: [[], []],
            "ledger/": [stale_ledger],
        }

    async def list_keys(
        self, prefix: str, *, start_after: str = "", limit: int | None = None
    ) -> list[str]:
        if self.stale.get(prefix):
            return self.stale[prefix].pop(0)
        return await super().list_keys(prefix, start_after=start_after, limit=limit)


def test_a_verify_overtaken_by_a_compaction_walks_again_against_its_checkpoint(
    pg_admin_url: str, tmp_path: Path
) -> None:
    deployment = _compacted(pg_admin_url, tmp_path)
    stale = [entry_key(n) for n in range(1, 8)]

    async def verify(ctx: OperatorContext, store: FilesystemBlobStore) -> LedgerSummary:
        return await verify_ledger(ctx.db, store)

    summary = deployment.run(
        lambda ctx: verify(ctx, _BeforeCompactionStore(deployment.blobs_root, stale))
    )
    assert (summary.folded_through, summary.objects) == (BEFORE_EPOCH, AFTER_EPOCH)
    # Without a checkpoint appearing meanwhile, the same gap is a removed entry.
    store = _BeforeCompactionStore(deployment.blobs_root, stale)
    store.stale[CHECKPOINT_PREFIX] = [[], [], []]
    with pytest.raises(LedgerError, match="entry 1 is missing"):
        deployment.run(lambda ctx: verify(ctx, store))


def test_a_long_fold_is_split_into_chained_checkpoints_and_spread_over_passes(
    pg_admin_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most MAX_OBJECTS_PER_CHECKPOINT objects a checkpoint and MAX_OBJECTS_PER_PASS a
    pass (here 2 and 4): five foldable objects take two passes and three checkpoints,
    each continuing from the one before; one removed from the middle breaks the chain."""
    monkeypatch.setattr(compaction, "MAX_OBJECTS_PER_CHECKPOINT", 2)
    monkeypatch.setattr(compaction, "MAX_OBJECTS_PER_PASS", 4)
    deployment = _deployment(pg_admin_url, tmp_path)
    deployment.run(lambda ctx: _epoch_and_retire(ctx, deployment.tenant_id))
    first = deployment.run(_compact)
    assert (first.checkpoints, first.folded_through) == ((2, 4), 4)
    assert deployment.ledger() == [5, 6, 7]
    second = deployment.run(_compact)
    assert (second.checkpoints, second.folded_through) == ((5,), 5)
    assert deployment.ledger() == [6, 7] and len(deployment.checkpoints()) == 3
    summary = deployment.run(_verify)
    assert (summary.checkpoints, summary.folded_through, summary.folded_entries) == (3, 5, 15)
    heads = [json.loads(p.read_bytes())["checkpoint"]["through"] for p in deployment.checkpoints()]

    async def locate(ctx: OperatorContext) -> list[str]:
        return [
            await locate_head(ctx.db, ctx.blobs, h["seq"], bytes.fromhex(h["head"])) for h in heads
        ]

    assert deployment.run(locate) == ["checkpoint"] * 3
    middle = deployment.checkpoints()[1]
    saved = middle.read_bytes()
    middle.unlink()
    with pytest.raises(LedgerError, match="does not continue from the one before"):
        deployment.run(_verify)
    middle.write_bytes(saved)
    deployment.run(_verify)
