"""A worker killed between the shred's commit and the ledger publish: the erasure stays
`in_progress` (never `completed` without its ledger entry), and the next worker
publishes the entry and completes it.

To stop the worker exactly there, the place of the ledger's next object in the filesystem
blob store is taken by a directory: the shred commits, every publish attempt fails, and
the worker is killed with SIGKILL while in that state. No hook in the vault's code is involved."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.api.helpers import create_key, wait_for
from tests.e2e.test_worker_crash import _worker
from tests.support import bearer, make_tenant, new_database, running_server
from vault.config import Settings
from vault.runtime import operator_context
from vault.services.ledger_objects import entry_key
from vault.services.ledger_watermark import watermark_for
from vault.services.receipts import ReceiptSigner
from workers.ledger import publish_pending


async def _erasure_state(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)  # the owner: sees every tenant
    try:
        erasure = await conn.fetchrow("SELECT id, status, subject_id, generation FROM erasures")
        assert erasure is not None
        outbox = await conn.fetch(
            "SELECT key_id, published_at FROM ledger_outbox WHERE erasure_id = $1", erasure["id"]
        )
        live = await conn.fetchval(
            "SELECT count(*) FROM subject_keys WHERE subject_id = $1 AND generation = $2"
            " AND wrapped_key IS NOT NULL",
            erasure["subject_id"],
            erasure["generation"],
        )
        return {
            "id": str(erasure["id"]),
            "status": erasure["status"],
            "outbox": len(outbox),
            "published": sum(1 for r in outbox if r["published_at"] is not None),
            "key_ids": sorted(r["key_id"] for r in outbox),
            "live_keys": live,
        }
    finally:
        await conn.close()


async def _publish_pending(settings: Settings, url: str) -> None:
    async with operator_context(settings, url) as ctx:
        signer = await ReceiptSigner.load_or_create(ctx.db, ctx.root)
        watermark = watermark_for(ctx.root, ctx.blobs)
        await publish_pending(ctx.db, ctx.blobs, 0, watermark, signer=signer)


def _wait_for(url: str, done: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state = asyncio.run(_erasure_state(url))
        if done(state) or time.monotonic() > deadline:
            return state
        time.sleep(0.3)


@pytest.mark.slow
def test_worker_killed_between_shred_and_ledger_publish_publishes_after_restart(
    pg_admin_url: str, tmp_path: Path
) -> None:
    url = new_database(pg_admin_url)
    settings = Settings(data_dir=tmp_path / "data", database_url=url)
    tenant = make_tenant(settings, url)
    with running_server(settings, url, run_jobs=False) as api, api.client() as http:
        app = bearer(create_key(http, tenant, ["ingest"])["secret"])
        privacy = bearer(create_key(http, tenant, ["erasure"])["secret"])
        for category in ("recording", "account"):
            http.post(f"/v1/subjects/s/artefacts?category={category}", content=b"x", headers=app)
        assert http.post("/v1/subjects/s/erasure", headers=privacy).status_code == 202

    ledger_dir = settings.data_dir / "blobs" / "ledger"
    # Start-up wrote the signed marker, entry 1. The request's own instruction entry
    # (scheduled; the API ran no publisher) goes out as entry 2 before the block, so the
    # worker's start-up has nothing to publish; then a directory where entry 3 belongs
    # makes the publisher's write fail (reads see no entry 3).
    asyncio.run(_publish_pending(settings, url))
    assert sorted(p.name for p in ledger_dir.iterdir()) == [
        Path(entry_key(1)).name,
        Path(entry_key(2)).name,
    ]
    blocked = settings.data_dir / "blobs" / entry_key(3)
    blocked.mkdir()
    log = tmp_path / "worker.log"
    worker = _worker(settings, log)
    try:
        shredded = _wait_for(url, lambda s: s["outbox"] > 0)
        # The publisher's next try (every 2 s), after the shred, fails: wait for it
        # rather than for a fixed time.
        failed_before = _publish_failures(log)
        assert wait_for(lambda: _publish_failures(log) > failed_before, timeout=30), (
            log.read_text()[-3000:]
        )
        stuck = asyncio.run(_erasure_state(url))
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    assert shredded["outbox"] >= 3, log.read_text()[-3000:]  # recording, account, identity
    assert stuck["status"] == "in_progress" and stuck["published"] == 0
    assert stuck["live_keys"] == 0  # the shred itself is committed

    blocked.rmdir()
    worker = _worker(settings, log)
    try:
        done = _wait_for(url, lambda s: s["status"] == "completed")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert done["status"] == "completed", log.read_text()[-3000:]
    assert done["published"] == done["outbox"] == stuck["outbox"]

    entries = [
        entry
        for path in sorted(ledger_dir.iterdir())
        for entry in json.loads(path.read_bytes())["ledger_entry"]["entries"]
        # The request's own entry (scheduled) holds up no erasure and is not the shred's.
        if entry["key_kind"] != "erasure_request"
    ]
    assert sorted(e["key_id"] for e in entries) == stuck["key_ids"]
    assert {e["erasure_id"] for e in entries} == {stuck["id"]}
    verified = subprocess.run(
        [sys.executable, "-m", "vault", "ledger", "verify", "--json"],
        env=_worker_env(settings), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    # `entries` counts destroyed keys; the erasure's instruction entry is not one.
    [instruction] = [e for e in entries if e["key_kind"] == "erasure"]
    assert instruction["key_id"] == str(stuck["id"])
    assert json.loads(verified.stdout)["entries"] == len(entries) - 1


def _publish_failures(log: Path) -> int:
    """How many of the shred-ledger job's rounds the worker has logged as failed."""
    return sum(
        1
        for line in log.read_text().splitlines()
        if "job_failed" in line and "shred-ledger" in line
    )


def _worker_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "DATAVAULT_DATA_DIR": str(settings.data_dir),
    }
