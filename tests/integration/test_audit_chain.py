"""`datavault audit verify` finds a changed, removed, reordered or cut-off access-log row."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.support import ServerThread, Tenant
from vault.config import Settings
from vault.runtime import operator_context
from vault.services.access_anchor import anchor_key, publish_anchors


def _audit_verify(
    database_url: str, data_dir: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "DATAVAULT_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "vault", "audit", "verify", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _as_owner(database_url: str, *statements: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction():
                for statement in statements:
                    await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture
def logged_tenant(server: ServerThread, tenant: Tenant) -> Tenant:
    with server.client() as http:
        for _ in range(5):
            assert http.get("/v1/api-keys", headers=tenant.auth()).status_code == 200
    return tenant


def test_untouched_chain_verifies(database_url: str, data_dir: Path, logged_tenant: Tenant) -> None:
    result = _audit_verify(database_url, data_dir, "--tenant", logged_tenant.slug, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["chains"][0]["rows"] == 5


def test_changed_row_is_named(database_url: str, data_dir: Path, logged_tenant: Tenant) -> None:
    _as_owner(
        database_url,
        f"UPDATE access_log SET status = 500 WHERE tenant_id = '{logged_tenant.id}' AND seq = 3",
    )
    result = _audit_verify(database_url, data_dir, "--tenant", logged_tenant.slug)
    assert result.returncode == 1
    assert "BROKEN at row 3" in result.stdout
    assert "changed" in result.stdout


def test_removed_row_is_named(database_url: str, data_dir: Path, logged_tenant: Tenant) -> None:
    _as_owner(
        database_url, f"DELETE FROM access_log WHERE tenant_id = '{logged_tenant.id}' AND seq = 2"
    )
    result = _audit_verify(database_url, data_dir, "--tenant", logged_tenant.slug)
    assert result.returncode == 1
    assert "BROKEN at row 2" in result.stdout


def test_reordered_rows_are_named(database_url: str, data_dir: Path, logged_tenant: Tenant) -> None:
    where = f"tenant_id = '{logged_tenant.id}'"
    _as_owner(
        database_url,
        f"UPDATE access_log SET seq = -1 WHERE {where} AND seq = 3",
        f"UPDATE access_log SET seq = 3 WHERE {where} AND seq = 4",
        f"UPDATE access_log SET seq = 4 WHERE {where} AND seq = -1",
    )
    result = _audit_verify(database_url, data_dir, "--tenant", logged_tenant.slug)
    assert result.returncode == 1
    assert "BROKEN at row 3" in result.stdout


def test_cut_off_tail_is_detected(database_url: str, data_dir: Path, logged_tenant: Tenant) -> None:
    _as_owner(
        database_url, f"DELETE FROM access_log WHERE tenant_id = '{logged_tenant.id}' AND seq = 5"
    )
    result = _audit_verify(database_url, data_dir, "--tenant", logged_tenant.slug)
    assert result.returncode == 1
    assert "head says 5" in result.stdout


def test_unknown_tenant_exits_2(database_url: str, data_dir: Path) -> None:
    result = _audit_verify(database_url, data_dir, "--tenant", "no-such-tenant")
    assert result.returncode == 2
    assert "no tenant with slug" in result.stderr


def _publish_anchors(settings: Settings, database_url: str) -> int:
    async def run() -> int:
        async with operator_context(settings, database_url) as ctx:
            return await publish_anchors(ctx.db, ctx.blobs, ctx.secrets.access_log_anchor_key)

    return asyncio.run(run())


def test_tail_cut_with_consistent_head_is_caught_by_the_anchor(
    settings: Settings, database_url: str, data_dir: Path, logged_tenant: Tenant
) -> None:
    assert _publish_anchors(settings, database_url) >= 1
    where = f"tenant_id = '{logged_tenant.id}'"
    # A careful tamperer removes the last row and moves the head back to match.
    _as_owner(
        database_url,
        f"DELETE FROM access_log WHERE {where} AND seq = 5",
        f"UPDATE access_log_heads h SET seq = 4, row_hash = l.row_hash FROM access_log l "
        f"WHERE h.{where} AND l.{where} AND l.seq = 4",
    )
    result = _audit_verify(database_url, data_dir, "--tenant", logged_tenant.slug)
    assert result.returncode == 1
    assert "cut off" in result.stdout


def test_forged_anchor_is_reported(
    settings: Settings, database_url: str, data_dir: Path, logged_tenant: Tenant
) -> None:
    _publish_anchors(settings, database_url)
    path = data_dir.resolve() / "blobs" / anchor_key(logged_tenant.id)
    document = json.loads(path.read_bytes())
    document["seq"] = 2
    path.write_text(json.dumps(document))
    result = _audit_verify(database_url, data_dir, "--tenant", logged_tenant.slug)
    assert result.returncode == 1
    assert "anchor MAC does not verify" in result.stdout
