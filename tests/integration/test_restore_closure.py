"""Restoring a backup from a line of history an earlier restore abandoned, for a tenant
closed in the later line.

Backup B1, then the tenant's KEK is rotated (`datavault keys rotate`: version 2, the
subject keys rewrapped under it, version 1 destroyed) and the application writes a
subject the later line never sees, backup B2. The operator restores B1: there the tenant
asks for its closure and the closure completes (subject keys, KEK version 1 and the HMAC
key destroyed, the ledger names them). The operator then restores B2: it holds KEK
version 2 and the late subject's key, which no ledger entry names (the closing line never
had them). DESIGN.md: a closed tenant keeps no live KEK (`datavault check deletion`
flags one), so the start-up finishes the closure's destruction before serving.

Real `pg_dump`s of a running vault, restored into fresh databases (the deployment's data
dir, with the shred ledger, is never rolled back); staging steps raise RuntimeError."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from tests.api.helpers import create_key
from tests.integration.test_redteam4_restore import (
    _pg,
    _publish,
    _read,
    _require,
    _restored,
    _write,
)
from tests.support import Tenant, make_tenant, running_server
from vault.config import Settings
from vault.runtime import operator_context
from vault.services.key_rotation import rotate_tenant_kek
from workers.closure import run_due_closures
from workers.deletion_check import find_deletion_violations


def _rotate(settings: Settings, url: str, tenant: Tenant) -> None:
    """What `datavault keys rotate --tenant SLUG` runs for the tenant."""

    async def run() -> None:
        async with operator_context(settings, url) as ctx:
            report = await rotate_tenant_kek(ctx.db, ctx.keyring, ctx.root, tenant.id)
            _require(report.new_version == 2, report)

    asyncio.run(run())


def _close_due(settings: Settings, url: str) -> int:
    """The closure job's pass once the closure delay has passed."""

    async def run() -> int:
        async with operator_context(settings, url) as ctx:
            later = datetime.now(UTC) + timedelta(days=settings.closure_delay_days + 1)
            return await run_due_closures(ctx.db, ctx.keyring, now=later)

    return asyncio.run(run())


def _tenant_state(url: str, tenant: Tenant) -> dict[str, object]:
    """The tenant's status and its live keys, and which KEK versions the shred-ledger
    outbox names as destroyed."""

    async def run() -> dict[str, object]:
        conn = await asyncpg.connect(url)
        try:
            status = await conn.fetchval("SELECT status FROM tenants WHERE id = $1", tenant.id)
            live_keks = await conn.fetch(
                "SELECT version FROM tenant_keks WHERE tenant_id = $1 AND wrapped_key IS NOT NULL",
                tenant.id,
            )
            live_subject_keys = await conn.fetchval(
                "SELECT count(*) FROM subject_keys"
                " WHERE tenant_id = $1 AND wrapped_key IS NOT NULL",
                tenant.id,
            )
            named = await conn.fetch(
                "SELECT key_id FROM ledger_outbox WHERE tenant_id = $1 AND key_kind = 'kek'",
                tenant.id,
            )
            return {
                "status": status,
                "live_keks": sorted(r["version"] for r in live_keks),
                "live_subject_keys": int(live_subject_keys),
                "keks_in_ledger": sorted(r["key_id"] for r in named),
            }
        finally:
            await conn.close()

    return asyncio.run(run())


def _violations(url: str) -> list[str]:
    found = asyncio.run(find_deletion_violations(url, grace=timedelta(0)))
    return sorted(v.kind for v in found)


def test_a_closure_in_a_later_line_destroys_the_kek_version_only_an_abandoned_backup_holds(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """Steps as the module says. Expected, once the vault restored from B2 has started
    (no worker pass): the tenant is closed; the application's key (live in B2) reads
    neither the early subject nor the late one (401); no KEK version, HMAC key or subject
    key of the tenant is live, and the ledger outbox names KEK version 2 destroyed;
    `datavault check deletion` finds no live key of the closed tenant, and nothing at all
    once the publisher has run."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    b1, b2 = tmp_path / "b1.dump", tmp_path / "b2.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        _write(http, app, "early", "profile")
        _pg("pg_dump", "-Fc", "-f", str(b1), "-d", url)
        _rotate(private_vault, url, tenant)
        _write(http, app, "late", "profile")
        _require(_read(http, app, "early", "profile").status_code == 200, "rotated and readable")
        _pg("pg_dump", "-Fc", "-f", str(b2), "-d", url)
    _require(_tenant_state(url, tenant)["live_keks"] == [2], "the rotation destroyed version 1")

    line, line_url = _restored(private_vault, pg_admin_url, b1)
    with running_server(line, line_url, run_jobs=False) as server, server.client() as http:
        asked = http.post(
            "/v1/tenant/closure", json={"reason": "offboarding"}, headers=tenant.auth()
        )
        _require(asked.status_code == 202, asked.text)
    _require(_close_due(line, line_url) == 1, "the closure completed in the later line")
    _publish(line, line_url)
    closed_line = _tenant_state(line_url, tenant)
    _require(closed_line["status"] == "closed" and closed_line["live_keks"] == [], closed_line)

    restored, restored_url = _restored(private_vault, pg_admin_url, b2)
    with running_server(restored, restored_url, run_jobs=False) as server, server.client() as http:
        reads = {ref: _read(http, app, ref, "profile").status_code for ref in ("early", "late")}
        at_start = _tenant_state(restored_url, tenant)
        violations_at_start = _violations(restored_url)
    _publish(restored, restored_url)
    assert reads == {"early": 401, "late": 401}, reads
    assert at_start == {
        "status": "closed",
        "live_keks": [],
        "live_subject_keys": 0,
        "keks_in_ledger": ["1", "2"],
    }, at_start
    assert "closed_tenant_keys_live" not in violations_at_start, violations_at_start
    assert _violations(restored_url) == []
