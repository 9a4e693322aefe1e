"""`datavault audit verify` finds a changed, removed, reordered or cut-off access-log row."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from crypto.secrets import generate_key
from tests.support import ServerThread, Tenant, running_server
from vault.config import Settings
from vault.domain.access_chain import GENESIS, ChainedFields, row_hash
from vault.runtime import operator_context
from vault.services.access_anchor import AnchorKeys, history_prefix
from workers.access_anchor import publish_anchors


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
            return await publish_anchors(ctx.db, ctx.blobs, ctx.secrets.anchor_keys, wait=True)

    return asyncio.run(run())


def _history(data_dir: Path, tenant: Tenant) -> list[Path]:
    return sorted((data_dir.resolve() / "blobs" / history_prefix(tenant.id)).glob("*.json"))


def _newest_anchor_path(data_dir: Path, tenant: Tenant) -> Path:
    return _history(data_dir, tenant)[-1]


def test_tail_cut_with_consistent_head_is_caught_by_the_anchor(
    settings: Settings, database_url: str, data_dir: Path, logged_tenant: Tenant
) -> None:
    _publish_anchors(settings, database_url)
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


def test_a_cut_tail_that_regrew_does_not_move_the_anchor(
    settings: Settings, database_url: str, data_dir: Path, logged_tenant: Tenant
) -> None:
    """Cut the tail, rewind the head, then let new rows grow the chain past the anchored
    seq: the anchoring job must not anchor the new head, which would make the history
    continue from a chain that contradicts it."""
    _publish_anchors(settings, database_url)
    anchored = [path.read_bytes() for path in _history(data_dir, logged_tenant)]
    where = f"tenant_id = '{logged_tenant.id}'"
    _as_owner(
        database_url,
        f"DELETE FROM access_log WHERE {where} AND seq >= 4",
        f"UPDATE access_log_heads h SET seq = 3, row_hash = l.row_hash FROM access_log l "
        f"WHERE h.{where} AND l.{where} AND l.seq = 3",
    )
    with running_server(settings, database_url, run_jobs=False) as server, server.client() as http:
        for _ in range(4):  # rows 4..7 (and their access-log rows): past the anchored 5
            http.get("/v1/tenant", headers=logged_tenant.auth())
    _publish_anchors(settings, database_url)
    assert [path.read_bytes() for path in _history(data_dir, logged_tenant)] == anchored
    result = _audit_verify(database_url, data_dir, "--tenant", logged_tenant.slug)
    assert result.returncode == 1


def test_forged_anchor_is_reported(
    settings: Settings, database_url: str, data_dir: Path, logged_tenant: Tenant
) -> None:
    _publish_anchors(settings, database_url)
    path = _newest_anchor_path(data_dir, logged_tenant)
    document = json.loads(path.read_bytes())
    document["seq"] = 2
    path.write_text(json.dumps(document))
    result = _audit_verify(database_url, data_dir, "--tenant", logged_tenant.slug)
    assert result.returncode == 1
    assert "anchor signature does not verify" in result.stdout


def test_anchor_is_signed_with_ed25519_by_the_deployment_key(
    settings: Settings, database_url: str, data_dir: Path, logged_tenant: Tenant
) -> None:
    _publish_anchors(settings, database_url)
    path = _newest_anchor_path(data_dir, logged_tenant)
    document = json.loads(path.read_bytes())

    async def public_key() -> bytes:
        async with operator_context(settings, database_url) as ctx:
            return ctx.secrets.anchor_keys.public_key

    public = asyncio.run(public_key())
    assert document["v"] == 4 and document["alg"] == "Ed25519" and "mac" not in document
    assert path.name == f"{document['anchor_seq']:012d}.json"
    signed = {k: v for k, v in document.items() if k != "signature"}
    message = json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()
    signature = base64.urlsafe_b64decode(document["signature"] + "==")
    # Checks with the public key alone, as any Ed25519 library would.
    Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    assert document["seq"] == 5


def test_anchor_signed_by_another_key_is_reported(
    settings: Settings, database_url: str, data_dir: Path, logged_tenant: Tenant
) -> None:
    _publish_anchors(settings, database_url)
    path = _newest_anchor_path(data_dir, logged_tenant)
    document = json.loads(path.read_bytes())
    # A tamperer with their own key signs a head of their choosing, in the right format.
    forger = AnchorKeys(generate_key(), generate_key())
    document.update(seq=2, key_id=forger.key_id)
    signed = {k: v for k, v in document.items() if k != "signature"}
    message = json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()
    forged = Ed25519PrivateKey.from_private_bytes(forger.signing_key.reveal()).sign(message)
    document["signature"] = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    path.write_text(json.dumps(document))
    result = _audit_verify(database_url, data_dir, "--tenant", logged_tenant.slug)
    assert result.returncode == 1
    assert "anchor is signed by another key" in result.stdout
    # Claiming the deployment's key id does not help either.

    async def real_key_id() -> str:
        async with operator_context(settings, database_url) as ctx:
            return ctx.secrets.anchor_keys.key_id

    document["key_id"] = asyncio.run(real_key_id())
    path.write_text(json.dumps(document))
    result = _audit_verify(database_url, data_dir, "--tenant", logged_tenant.slug)
    assert result.returncode == 1
    assert "anchor signature does not verify" in result.stdout


def test_rewritten_table_with_a_recomputed_chain_is_caught_by_the_anchor(
    settings: Settings, database_url: str, data_dir: Path, logged_tenant: Tenant
) -> None:
    assert _publish_anchors(settings, database_url) >= 1

    async def rewrite() -> None:
        """Change row 2 and recompute every hash after it and the head: a chain that is
        consistent in itself, as someone with the table (not the anchor key) can make."""
        conn = await asyncpg.connect(database_url)  # the owner
        try:
            async with conn.transaction():
                rows = await conn.fetch(
                    "SELECT * FROM access_log WHERE tenant_id = $1 ORDER BY seq",
                    logged_tenant.id,
                )
                prev = GENESIS
                for row in rows:
                    status = 404 if row["seq"] == 2 else row["status"]
                    fields = ChainedFields(
                        tenant_id=row["tenant_id"], seq=row["seq"], at=row["at"],
                        request_id=row["request_id"], api_key_id=row["api_key_id"],
                        key_prefix=row["key_prefix"], ip_hash=bytes(row["ip_hash"]),
                        method=row["method"], route=row["route"], status=status,
                        bytes_in=row["bytes_in"], bytes_out=row["bytes_out"],
                        subject_ref_hash=row["subject_ref_hash"], artefact_id=row["artefact_id"],
                    )  # fmt: skip
                    current = row_hash(prev, fields)
                    await conn.execute(
                        "UPDATE access_log SET status = $3, prev_hash = $4, row_hash = $5"
                        " WHERE tenant_id = $1 AND seq = $2",
                        logged_tenant.id, row["seq"], status, prev, current,
                    )  # fmt: skip
                    prev = current
                await conn.execute(
                    "UPDATE access_log_heads SET row_hash = $2 WHERE tenant_id = $1",
                    logged_tenant.id,
                    prev,
                )
        finally:
            await conn.close()

    asyncio.run(rewrite())
    result = _audit_verify(database_url, data_dir, "--tenant", logged_tenant.slug)
    assert result.returncode == 1
    assert "BROKEN at row 5" in result.stdout and "rewritten" in result.stdout
