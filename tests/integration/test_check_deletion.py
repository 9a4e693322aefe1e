"""`datavault check deletion`: clean on a vault that did its work, exit 1 naming what is
wrong when a key that should be gone is live again (as after a bug or a bad restore),
and the operator's way back in for a tenant without an admin key."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import asyncpg

from tests.api.helpers import auth, create_key, put_record, subject_url
from tests.jobs import run_worker_pass
from tests.support import ServerThread, make_tenant


def _cli(vault: ServerThread, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAVAULT_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "vault", *args, "--json",
         "--database-url", vault.database_url, "--data-dir", str(vault.settings.data_dir)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _checked(vault: ServerThread) -> tuple[int, dict[str, Any]]:
    done = _cli(vault, "check", "deletion", "--grace-seconds", "0")
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_check_deletion_is_clean_then_names_a_revived_key(quiet_vault: ServerThread) -> None:
    vault = quiet_vault
    tenant = make_tenant(vault.settings, vault.database_url)
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        assert put_record(http, app, "vic", "profile", b'{"v": 1}').is_success
        erasure = http.post(subject_url("vic", "erasure"), headers=auth(privacy)).json()
        run_worker_pass(vault)
    clean_code, clean = _checked(vault)
    revived = asyncio.run(_revive_a_shredded_key(vault.database_url, tenant.id))
    broken_code, broken = _checked(vault)
    assert (clean_code, clean["ok"]) == (0, True), clean
    assert broken_code == 1 and not broken["ok"]
    kinds = {(v["kind"], v["tenant_id"]) for v in broken["violations"]}
    assert ("live_key_in_erased_generation", str(tenant.id)) in kinds
    details = " ".join(v["detail"] for v in broken["violations"])
    assert revived in details and erasure["id"] in details
    assert "vic" not in details  # ids and kinds only, never a reference


async def _revive_a_shredded_key(url: str, tenant_id: object) -> str:
    """Put wrapped bytes back into a destroyed subject key, as a restored old backup
    without the ledger's reconciliation would."""
    conn = await asyncpg.connect(url)
    try:
        key_id = await conn.fetchval(
            "UPDATE subject_keys SET wrapped_key = '\\x01', destroyed_at = NULL"
            " WHERE id = (SELECT id FROM subject_keys WHERE tenant_id = $1"
            " AND category = 'account' LIMIT 1) RETURNING id",
            tenant_id,
        )
        return str(key_id)
    finally:
        await conn.close()


def test_the_operator_mints_an_admin_key_for_a_locked_out_tenant(
    quiet_vault: ServerThread,
) -> None:
    vault = quiet_vault
    tenant = make_tenant(vault.settings, vault.database_url)
    with vault.client() as http:
        last = http.get("/v1/api-keys", headers=tenant.auth()).json()["items"][0]
        refused = http.delete(f"/v1/api-keys/{last['id']}", headers=tenant.auth())
    minted = _cli(
        vault, "api-key", "create", "--tenant", tenant.slug, "--scopes", "admin",
        "--owner", "ops@example.test",
    )  # fmt: skip
    assert refused.status_code == 409, refused.text
    assert minted.returncode == 0, minted.stderr
    created = json.loads(minted.stdout)
    assert created["owner"] == "ops@example.test" and created["scopes"] == ["admin"]
    with vault.client() as http:
        headers = {"Authorization": f"Bearer {created['api_key']}"}
        listed = http.get("/v1/api-keys", headers=headers)
        # With a second admin key the first may go.
        revoked = http.delete(f"/v1/api-keys/{last['id']}", headers=headers)
    assert listed.status_code == 200 and revoked.status_code == 204
