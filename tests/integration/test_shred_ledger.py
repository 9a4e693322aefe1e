"""The shred ledger outside PostgreSQL: a restored backup cannot bring a shredded subject
back, a shortened ledger stops the vault, `datavault ledger verify` finds tampering."""

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

from tests.api.helpers import create_key
from tests.support import bearer, make_tenant, running_server, with_database
from vault.blobs.filesystem import FilesystemBlobStore
from vault.config import Settings
from vault.db.database import Database
from vault.db.embedded import postgres_bin_dir
from vault.services.ledger import LedgerError, reconcile_on_start

PG_BIN = postgres_bin_dir()


def _erase(http: httpx.Client, keys: dict[str, dict[str, str]], ref: str) -> dict[str, Any]:
    erasure = http.post(f"/v1/subjects/{ref}/erasure", headers=keys["privacy"]).json()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        shown = http.get(f"/v1/erasures/{erasure['id']}", headers=keys["privacy"]).json()
        if shown["status"] == "completed":
            return dict(shown)
        time.sleep(0.2)
    raise AssertionError("erasure did not complete")


def _pg(tool: str, *args: str) -> None:
    subprocess.run([str(PG_BIN / tool), *args], check=True, capture_output=True, timeout=120)


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
        erased = _erase(http, keys, "victim")
    assert {s["category"] for s in erased["shredded"]} >= {"recording", "account"}

    # The operator restores yesterday's backup into a fresh database.
    restored_name = f"restored_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        conn = await asyncpg.connect(pg_admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{restored_name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    restored_url = with_database(pg_admin_url, restored_name)
    _pg("pg_restore", "-d", restored_url, str(dump))

    async def live_keys() -> int:
        conn = await asyncpg.connect(restored_url)
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM subject_keys WHERE wrapped_key IS NOT NULL"
                )
            )
        finally:
            await conn.close()

    assert asyncio.run(live_keys()) >= 3  # the backup holds the keys again...
    restored = Settings(data_dir=private_vault.data_dir, database_url=restored_url)
    with running_server(restored, restored_url) as server, server.client() as http:
        content = http.get(
            f"/v1/subjects/victim/artefacts/{artefact['id']}/content", headers=keys["app"]
        )
        record = http.get("/v1/subjects/victim/records/profile", headers=keys["app"])
    # ...but the start-up reconciliation destroyed them again before serving.
    assert asyncio.run(live_keys()) == 0
    assert content.status_code == 404
    assert record.status_code == 404


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
            _erase(http, keys, ref)
    ok = _cli(private_vault, "ledger", "verify", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["entries"] >= 4

    ledger = sorted((private_vault.data_dir / "blobs" / "ledger").iterdir())
    assert len(ledger) >= 2
    originals = [path.read_bytes() for path in ledger]
    # A changed entry: in the middle the next entry's link breaks; the last one no entry
    # links to yet, so it is checked against the head PostgreSQL recorded.
    for index in (0, -1):
        document = json.loads(originals[index])
        document["entries"][0]["key_id"] = str(uuid.uuid4())
        ledger[index].write_text(json.dumps(document, sort_keys=True, separators=(",", ":")))
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

    with pytest.raises(LedgerError):
        asyncio.run(start_check())
