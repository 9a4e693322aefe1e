"""The shred ledger outside PostgreSQL: a restored backup cannot bring a shredded subject
back, a shortened ledger stops the vault, `datavault ledger verify` finds tampering."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.helpers import create_key
from tests.jobs import run_worker_pass
from tests.support import ServerThread, bearer, empty_database, make_tenant, running_server
from vault.blobs.filesystem import FilesystemBlobStore
from vault.config import Settings
from vault.db.database import Database
from vault.db.embedded import postgres_bin_dir
from vault.services.ledger import LedgerError, reconcile_on_start

PG_BIN = postgres_bin_dir()


def _erase(
    server: ServerThread, http: httpx.Client, keys: dict[str, dict[str, str]], ref: str
) -> dict[str, Any]:
    """Erase `ref` and run the jobs once: the executor shreds, the ledger publishes."""
    erasure = http.post(f"/v1/subjects/{ref}/erasure", headers=keys["privacy"]).json()
    run_worker_pass(server)
    shown = http.get(f"/v1/erasures/{erasure['id']}", headers=keys["privacy"]).json()
    assert shown["status"] == "completed", shown
    return dict(shown)


def _pg(tool: str, *args: str) -> None:
    subprocess.run([str(PG_BIN / tool), *args], check=True, capture_output=True, timeout=120)


def _restore(pg_admin_url: str, dump: Path) -> str:
    """Restore a pg_dump into a fresh database, as an operator restoring a backup would."""
    restored_url = empty_database(pg_admin_url)
    _pg("pg_restore", "-d", restored_url, str(dump))
    return restored_url


def _fetchval(url: str, query: str, *args: Any) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def _publish(server: ServerThread) -> None:
    """A pass of the jobs: the shred ledger publishes every destroyed key's outbox row."""
    run_worker_pass(server)
    unpublished = "SELECT count(*) FROM ledger_outbox WHERE published_at IS NULL"
    assert _fetchval(server.database_url, unpublished) == 0, "the shred ledger did not publish"


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
        check=False,
    )


def test_restored_backup_does_not_bring_an_erased_subject_back(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "before-erasure.dump"
    with running_server(private_vault, url) as server, server.client() as http:
        keys = {
            "app": bearer(create_key(http, tenant, ["ingest", "read"])["secret"]),
            "privacy": bearer(create_key(http, tenant, ["erasure"])["secret"]),
        }
        artefact = http.post(
            "/v1/subjects/victim/artefacts?category=recording",
            content=b"secret call",
            headers=keys["app"],
        ).json()
        http.put(
            "/v1/subjects/victim/records/profile?category=account",
            json={"x": 1},
            headers=keys["app"],
        )
        _pg("pg_dump", "-Fc", "-f", str(dump), "-d", url)
        erased = _erase(server, http, keys, "victim")
    assert {s["category"] for s in erased["shredded"]} >= {"recording", "account"}

    # The operator restores yesterday's backup into a fresh database.
    restored_url = _restore(pg_admin_url, dump)

    def live_keys() -> int:
        query = "SELECT count(*) FROM subject_keys WHERE wrapped_key IS NOT NULL"
        return int(_fetchval(restored_url, query))

    assert live_keys() >= 3  # the backup holds the keys again...
    restored = Settings(data_dir=private_vault.data_dir, database_url=restored_url)
    with running_server(restored, restored_url) as server, server.client() as http:
        content = http.get(
            f"/v1/subjects/victim/artefacts/{artefact['id']}/content", headers=keys["app"]
        )
        record = http.get("/v1/subjects/victim/records/profile", headers=keys["app"])
    # ...but the start-up reconciliation destroyed them again before serving.
    assert live_keys() == 0
    # And the rows say so: the vault knows they are gone.
    assert content.status_code == 410
    assert record.status_code == 410


def test_restored_backup_does_not_bring_deleted_or_replaced_data_back(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """Not only erasures: a deleted artefact, a deleted record and a record's replaced
    version are destroyed keys too, and the ledger destroys them again after a restore."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "before-deletions.dump"
    with running_server(private_vault, url) as server, server.client() as http:
        app = bearer(create_key(http, tenant, ["ingest", "read"])["secret"])
        base = "/v1/subjects/keeper"
        deleted, kept = (
            http.post(f"{base}/artefacts?category=recording", content=body, headers=app).json()
            for body in (b"deleted call", b"kept call")
        )
        http.put(f"{base}/records/profile?category=account", json={"v": "old"}, headers=app)
        http.put(f"{base}/records/notes?category=account", json={"n": 1}, headers=app)
        _pg("pg_dump", "-Fc", "-f", str(dump), "-d", url)
        assert http.delete(f"{base}/artefacts/{deleted['id']}", headers=app).status_code == 204
        assert http.delete(f"{base}/records/notes", headers=app).status_code == 204
        replaced = http.put(f"{base}/records/profile", json={"v": "new"}, headers=app)
        assert replaced.status_code == 200
        _publish(server)

    restored_url = _restore(pg_admin_url, dump)
    live_data_keys = "SELECT count(*) FROM data_keys WHERE wrapped_key IS NOT NULL"
    in_backup = _fetchval(restored_url, live_data_keys)  # the backup holds them again...
    restored = Settings(data_dir=private_vault.data_dir, database_url=restored_url)
    with running_server(restored, restored_url) as server, server.client() as http:
        gone = http.get(f"{base}/artefacts/{deleted['id']}/content", headers=app)
        still_there = http.get(f"{base}/artefacts/{kept['id']}/content", headers=app)
        notes = http.get(f"{base}/records/notes", headers=app)
        profile = http.get(f"{base}/records/profile", headers=app)
    # ...but start-up destroyed the three again, and only those.
    assert _fetchval(restored_url, live_data_keys) == in_backup - 3
    assert gone.status_code in (404, 410)
    assert (still_there.status_code, still_there.content) == (200, b"kept call")
    assert notes.status_code in (404, 410)
    assert profile.status_code in (404, 410)
    assert b"old" not in profile.content


def test_ledger_verify_and_start_refuse_a_tampered_ledger(private_vault: Settings) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    with running_server(private_vault, url) as server, server.client() as http:
        keys = {
            "app": bearer(create_key(http, tenant, ["ingest"])["secret"]),
            "privacy": bearer(create_key(http, tenant, ["erasure"])["secret"]),
        }
        for ref in ("a", "b"):
            http.put(f"/v1/subjects/{ref}/records/r?category=account", json={}, headers=keys["app"])
            _erase(server, http, keys, ref)
    ok = _cli(private_vault, "ledger", "verify", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["entries"] >= 4

    ledger = sorted((private_vault.data_dir / "blobs" / "ledger").iterdir())
    assert len(ledger) >= 2
    originals = [path.read_bytes() for path in ledger]
    # A changed entry: its signature no longer verifies (and in the middle the next
    # entry's link breaks; the last one no entry links to yet, so it is checked against
    # the head PostgreSQL recorded). The first object is the signed marker (no entries).
    for index in (1, -1):
        ledger[index].write_text(_changed(originals[index]))
        changed = _cli(private_vault, "ledger", "verify")
        assert changed.returncode == 1 and "BROKEN" in changed.stdout, (index, changed.stdout)
        assert "changed" in changed.stdout
        ledger[index].write_bytes(originals[index])
    assert _cli(private_vault, "ledger", "verify").returncode == 0

    # A removed entry: in the middle it leaves a gap; at the end the ledger is shorter
    # than the head PostgreSQL recorded.
    ledger[0].unlink()
    removed = _cli(private_vault, "ledger", "verify")
    assert removed.returncode == 1 and "entry 1 is missing" in removed.stdout
    ledger[0].write_bytes(originals[0])
    ledger[-1].unlink()
    removed = _cli(private_vault, "ledger", "verify", "--json")
    assert removed.returncode == 1 and "were removed" in json.loads(removed.stdout)["problem"]

    async def start_check() -> None:
        db = await Database.connect(url, max_size=2)
        try:
            await reconcile_on_start(
                db, FilesystemBlobStore(private_vault.data_dir.resolve() / "blobs")
            )
        finally:
            await db.close()

    with pytest.raises(LedgerError, match="removed"):
        asyncio.run(start_check())
    # Start-up reads from the head the database recorded: the entry there changed, or one
    # missing after it (as a restored backup with an older head would see), also refuse.
    ledger[-1].write_bytes(originals[-1])
    ledger[-1].write_text(_changed(originals[-1]))
    with pytest.raises(LedgerError, match="changed"):
        asyncio.run(start_check())
    ledger[-1].write_bytes(originals[-1])
    asyncio.run(_set_head(url, 0))  # as a backup from before any shred would hold
    ledger[0].unlink()
    with pytest.raises(LedgerError, match="entry 1 is missing"):
        asyncio.run(start_check())
    ledger[0].write_bytes(originals[0])
    asyncio.run(start_check())


def _changed(original: bytes) -> str:
    """A signed ledger object with its first entry's key id changed, signature kept."""
    document = json.loads(original)
    document["ledger_entry"]["entries"][0]["key_id"] = str(uuid.uuid4())
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


async def _set_head(url: str, seq: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("UPDATE ledger_head SET seq = $1, entry_hash = $2", seq, bytes(32))
    finally:
        await conn.close()
