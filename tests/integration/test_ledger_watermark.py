"""A cut ledger plus an older backup is caught: the root-key store remembers the highest
ledger head any process published, start-up and `ledger verify` refuse a ledger that does
not reach it, and every receipt names the head it was issued at. On S3, a bucket without
Object Lock is refused unless the operator accepts the weaker guarantee."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.api.helpers import auth, create_key, put_record, record_url, subject_url
from tests.jobs import run_worker_pass
from tests.seaweed import SeaweedS3
from tests.support import ServerThread, empty_database, make_tenant, private_server
from vault.blobs.filesystem import FilesystemBlobStore
from vault.config import ConfigError, Settings
from vault.db.database import Database
from vault.db.embedded import postgres_bin_dir
from vault.server import refuse_unlocked_ledger
from vault.services.ledger import LedgerError, entry_key, reconcile_on_start
from vault.services.ledger_watermark import LedgerWatermark

PG_BIN = postgres_bin_dir()


def _pg(tool: str, *args: str) -> None:
    subprocess.run([str(PG_BIN / tool), *args], check=True, capture_output=True, timeout=120)


def _watermark(vault: ServerThread) -> LedgerWatermark:
    blobs = FilesystemBlobStore(vault.settings.data_dir.resolve() / "blobs")
    return LedgerWatermark(vault.settings.data_dir / "root.key.ledger-head", blobs.location)


def _reconcile(url: str, blobs_root: Path, watermark: LedgerWatermark | None) -> int:
    async def run() -> int:
        db = await Database.connect(url, max_size=2)
        try:
            return await reconcile_on_start(db, FilesystemBlobStore(blobs_root), watermark)
        finally:
            await db.close()

    return asyncio.run(run())


def test_an_old_backup_with_the_ledger_tail_removed_is_refused(
    pg_admin_url: str, tmp_path: Path
) -> None:
    dump = tmp_path / "before-erasure.dump"
    with private_server(pg_admin_url, tmp_path / "data") as vault, vault.client() as http:
        tenant = make_tenant(vault.settings, vault.database_url)
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        assert put_record(http, app, "victim", "profile", b'{"x": 1}').status_code == 201
        _pg("pg_dump", "-Fc", "-f", str(dump), "-d", vault.database_url)
        erasure = http.post(subject_url("victim", "erasure"), headers=auth(privacy)).json()
        run_worker_pass(vault)
        receipt = http.get(f"/v1/erasures/{erasure['id']}/receipt", headers=auth(privacy))
        gone = http.get(record_url("victim", "profile"), headers=auth(app))
        blobs_root = vault.settings.data_dir.resolve() / "blobs"
        watermark = _watermark(vault)
    kept = watermark.highest()
    ledger: dict[str, Any] = receipt.json()["receipt"]["ledger"]
    assert gone.status_code in (404, 410)
    assert kept is not None and ledger == {"seq": kept.seq, "head": kept.hash.hex()}

    # Stop, restore yesterday's backup, and delete the ledger's last object.
    restored_url = empty_database(pg_admin_url)
    _pg("pg_restore", "-d", restored_url, str(dump))
    (blobs_root / entry_key(kept.seq)).unlink()

    # Without the watermark nothing notices: the ledger ends where the old database
    # expects it (what main did before).
    assert _reconcile(restored_url, blobs_root, None) == 0
    with pytest.raises(LedgerError, match=f"no entry {kept.seq}"):
        _reconcile(restored_url, blobs_root, watermark)


def test_ledger_verify_names_a_ledger_short_of_the_watermark(
    quiet_vault: ServerThread, tmp_path: Path
) -> None:
    vault = quiet_vault
    with vault.client() as http:
        tenant = make_tenant(vault.settings, vault.database_url)
        app = create_key(http, tenant, ["ingest"])
        privacy = create_key(http, tenant, ["erasure"])
        assert put_record(http, app, "ledgered", "profile", b"{}").status_code == 201
        http.post(subject_url("ledgered", "erasure"), headers=auth(privacy))
        run_worker_pass(vault)
    kept = _watermark(vault).highest()
    assert kept is not None
    entry = vault.settings.data_dir.resolve() / "blobs" / entry_key(kept.seq)
    saved = entry.read_bytes()
    entry.unlink()
    try:
        verify = subprocess.run(
            [sys.executable, "-m", "vault", "ledger", "verify", "--json",
             "--database-url", vault.database_url, "--data-dir", str(vault.settings.data_dir)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        entry.write_bytes(saved)
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert "missing" in verify.stdout or f"entry {kept.seq}" in verify.stdout


def test_an_s3_bucket_without_object_lock_is_refused_unless_accepted(
    seaweed_s3: SeaweedS3, tmp_path: Path
) -> None:
    locked = f"locked-{uuid.uuid4().hex[:8]}"
    seaweed_s3.client().create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
    base = Settings(data_dir=tmp_path)
    unlocked = seaweed_s3.vault_settings(base, "postgresql://unused")  # the shared bucket
    with pytest.raises(ConfigError, match="no Object Lock"):
        asyncio.run(refuse_unlocked_ledger(unlocked))
    asyncio.run(refuse_unlocked_ledger(unlocked.with_overrides(accept_unlocked_ledger=True)))
    asyncio.run(refuse_unlocked_ledger(seaweed_s3.vault_settings(base, "postgresql://x", locked)))
