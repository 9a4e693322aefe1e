"""Tenant closure: scheduled, cancellable, and then every key goes except what holds keep."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from tests.api.helpers import create_key
from tests.support import (
    ServerThread,
    Tenant,
    bearer,
    make_tenant,
    private_server,
    problem,
)
from vault.config import Settings
from vault.runtime import operator_context
from vault.services.closure import request_closure
from workers.closure import run_due_closures


def _close_due(settings: Settings, database_url: str) -> int:
    async def run() -> int:
        async with operator_context(settings, database_url) as ctx:
            return await run_due_closures(
                ctx.db, ctx.keyring, now=datetime.now(UTC) + timedelta(days=61)
            )

    return asyncio.run(run())


def _live_keys(database_url: str, tenant: Tenant) -> tuple[int, int]:
    async def run() -> tuple[int, int]:
        conn = await asyncpg.connect(database_url)
        try:
            subject_keys = await conn.fetchval(
                "SELECT count(*) FROM subject_keys"
                " WHERE tenant_id = $1 AND wrapped_key IS NOT NULL",
                tenant.id,
            )
            keks = await conn.fetchval(
                "SELECT count(*) FROM tenant_keks WHERE tenant_id = $1 AND wrapped_key IS NOT NULL",
                tenant.id,
            )
            return int(subject_keys), int(keks)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_closure_is_scheduled_60_days_out_and_can_be_cancelled(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        requested = http.post(
            "/v1/tenant/closure", json={"reason": "contract ended"}, headers=tenant.auth()
        )
        twice = http.post("/v1/tenant/closure", json={"reason": "again"}, headers=tenant.auth())
        cancelled = http.delete("/v1/tenant/closure", headers=tenant.auth())
        shown = http.get("/v1/tenant", headers=tenant.auth()).json()
        no_reason = http.post("/v1/tenant/closure", json={}, headers=tenant.auth())
    assert requested.status_code == 202 and requested.json()["status"] == "closing"
    due = datetime.fromisoformat(requested.json()["closure_due_at"].replace("Z", "+00:00"))
    assert timedelta(days=59, hours=23) < due - datetime.now(UTC) <= timedelta(days=60)
    assert problem(twice)["status"] == 409
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "active"
    assert shown["status"] == "active"
    assert problem(no_reason)["status"] == 422


def test_the_closure_delay_is_the_deployments_setting(pg_admin_url: str, tmp_path: Path) -> None:
    with private_server(pg_admin_url, tmp_path / "data", closure_delay_days=7) as server:
        tenant = make_tenant(server.settings, server.database_url)
        with server.client() as http:
            requested = http.post(
                "/v1/tenant/closure", json={"reason": "contract ended"}, headers=tenant.auth()
            )
    assert requested.status_code == 202, requested.text
    due = datetime.fromisoformat(requested.json()["closure_due_at"].replace("Z", "+00:00"))
    assert timedelta(days=6, hours=23) < due - datetime.now(UTC) <= timedelta(days=7)


def test_due_closure_destroys_all_keys_but_held_ones_then_everything(
    server: ServerThread, tenant: Tenant, settings: Settings, database_url: str
) -> None:
    with server.client() as http:
        app = bearer(create_key(http, tenant, ["ingest", "read"])["secret"])
        officer = bearer(create_key(http, tenant, ["compliance"])["secret"])
        for ref in ("a", "b"):
            http.put(
                f"/v1/subjects/{ref}/records/r?category=billing", json={"ref": ref}, headers=app
            )
        hold = http.post(
            "/v1/holds",
            json={"subject_ref": "a", "reason": "billing", "reference": "INV"},
            headers=officer,
        ).json()
        assert (
            http.post(
                "/v1/tenant/closure", json={"reason": "offboarding"}, headers=tenant.auth()
            ).status_code
            == 202
        )
        # Before the delay has passed nothing is destroyed.
        assert run_now(settings, database_url) == 0
        assert _live_keys(database_url, tenant)[0] > 0

        assert _close_due(settings, database_url) == 0  # a hold keeps subject a: not closed yet
        kept = http.get("/v1/subjects/a/records/r", headers=officer)
        gone = http.get("/v1/subjects/b/records/r", headers=app)
        http.post(f"/v1/holds/{hold['id']}/release", json={"reason": "settled"}, headers=officer)
        assert _close_due(settings, database_url) == 1
        refused = http.get("/v1/tenant", headers=tenant.auth())
    assert kept.status_code == 200
    assert gone.status_code in (404, 410)
    assert _live_keys(database_url, tenant) == (0, 0)
    assert refused.status_code == 401


def _closure_requested_in_the_past(
    settings: Settings, database_url: str, tenant: Tenant, admin_key_id: str
) -> None:
    """A closure requested 61 days ago (the service's clock injected): its delay has
    passed, but the closure job has not necessarily run yet."""

    async def run() -> None:
        async with operator_context(settings, database_url) as ctx:
            await request_closure(
                ctx.db, tenant.id, uuid.UUID(admin_key_id), "offboarding",
                timedelta(days=settings.closure_delay_days),
                now=datetime.now(UTC) - timedelta(days=61),
            )  # fmt: skip

    asyncio.run(run())


def _status(database_url: str, tenant: Tenant) -> str:
    async def run() -> str:
        conn = await asyncpg.connect(database_url)
        try:
            return str(await conn.fetchval("SELECT status FROM tenants WHERE id = $1", tenant.id))
        finally:
            await conn.close()

    return asyncio.run(run())


def test_closure_cannot_be_cancelled_once_its_delay_has_passed_or_it_ran(
    server: ServerThread, tenant: Tenant, settings: Settings, database_url: str
) -> None:
    """API.md "Tenant": DELETE cancels a closure only before the delay has passed; after,
    409, and the closure stays scheduled (a half-run closure cannot be undone)."""
    with server.client() as http:
        admin = create_key(http, tenant, ["admin"])
        app = bearer(create_key(http, tenant, ["ingest", "read"])["secret"])
        officer = bearer(create_key(http, tenant, ["compliance"])["secret"])
        for ref in ("a", "b"):
            written = http.put(
                f"/v1/subjects/{ref}/records/r?category=billing", json={"ref": ref}, headers=app
            )
            assert written.status_code == 201, written.text
        # A hold on subject a keeps the tenant 'closing' even when the vault's own
        # closure job runs meanwhile: the tenant cannot be closed for good under it.
        hold = http.post(
            "/v1/holds",
            json={"subject_ref": "a", "reason": "billing", "reference": "INV"},
            headers=officer,
        ).json()
        _closure_requested_in_the_past(settings, database_url, tenant, admin["id"])

        # The delay has passed: too late to cancel, whether or not the job ran yet.
        too_late = http.delete("/v1/tenant/closure", headers=tenant.auth())
        shown = http.get("/v1/tenant", headers=tenant.auth()).json()

        # The closure ran: b's keys are destroyed, a's kept by the hold; still too late.
        assert run_now(settings, database_url) == 0
        ran = http.delete("/v1/tenant/closure", headers=tenant.auth())
        shown_after_run = http.get("/v1/tenant", headers=tenant.auth()).json()
        gone = http.get("/v1/subjects/b/records/r", headers=app)
        kept = http.get("/v1/subjects/a/records/r", headers=officer)

        # The hold released, the closure completes; a cancel cannot reopen the tenant.
        http.post(f"/v1/holds/{hold['id']}/release", json={"reason": "paid"}, headers=officer)
        run_now(settings, database_url)
        after_close = http.delete("/v1/tenant/closure", headers=tenant.auth())
    assert problem(too_late)["status"] == 409, too_late.text
    assert shown["status"] == "closing"
    assert problem(ran)["status"] == 409, ran.text
    assert shown_after_run["status"] == "closing"
    assert gone.status_code in (404, 410)
    assert kept.status_code == 200
    assert after_close.status_code == 401
    assert _status(database_url, tenant) == "closed"
    assert _live_keys(database_url, tenant) == (0, 0)


def run_now(settings: Settings, database_url: str) -> int:
    async def run() -> int:
        async with operator_context(settings, database_url) as ctx:
            return await run_due_closures(ctx.db, ctx.keyring)

    return asyncio.run(run())
