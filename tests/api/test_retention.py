"""Retention: defaults, expiry of old data (not when held), and statutory retention kept
through an erasure until its time has passed. The jobs run by hand with a moved clock, on
a vault of the module's own (quiet_vault)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.api.helpers import create_key
from tests.jobs import run_worker_pass
from tests.support import ServerThread, Tenant, bearer, make_tenant, problem
from vault.runtime import operator_context
from workers.erasure import run_due_erasures
from workers.retention import apply_retention


def _at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _keys(http: httpx.Client, tenant: Tenant) -> dict[str, dict[str, str]]:
    return {
        "app": bearer(create_key(http, tenant, ["ingest", "read"])["secret"]),
        "privacy": bearer(create_key(http, tenant, ["erasure"])["secret"]),
        "officer": bearer(create_key(http, tenant, ["compliance"])["secret"]),
    }


@pytest.fixture
def server(quiet_vault: ServerThread) -> ServerThread:
    return quiet_vault


@pytest.fixture
def tenant(quiet_vault: ServerThread) -> Tenant:
    return make_tenant(quiet_vault.settings, quiet_vault.database_url)


def _later(server: ServerThread, job: Any, days: int) -> int:
    async def run() -> int:
        async with operator_context(server.settings, server.database_url) as ctx:
            return int(await job(ctx.db, ctx.keyring, now=datetime.now(UTC) + timedelta(days=days)))

    return asyncio.run(run())


def test_default_retention_is_the_documented_policy(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        retention = http.get("/v1/tenant", headers=tenant.auth()).json()["settings"]["retention"]
        app = _keys(http, tenant)["app"]
        recording = http.post(
            "/v1/subjects/p/artefacts?category=recording", content=b"r", headers=app
        ).json()
        account = http.post(
            "/v1/subjects/p/artefacts?category=account", content=b"a", headers=app
        ).json()
    assert retention["recording"] == {"delete_after_days": 90, "keep_at_least_days": None}
    assert retention["transcript"]["delete_after_days"] == 90
    assert retention["support"]["delete_after_days"] == 3 * 365 + 1
    assert retention["account"] == {"delete_after_days": None, "keep_at_least_days": None}
    assert (
        retention["billing"]["keep_at_least_days"]
        == retention["billing"]["delete_after_days"]
        >= 7 * 365
    )
    expires = _at(recording["expires_at"]) - _at(recording["created_at"])
    assert abs(expires - timedelta(days=90)) < timedelta(seconds=5)
    assert account["expires_at"] is None


def test_data_past_its_retention_is_shredded_unless_held(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        app = keys["app"]
        old = http.post(
            "/v1/subjects/q/artefacts?category=recording", content=b"old call", headers=app
        ).json()
        held = http.post(
            "/v1/subjects/h/artefacts?category=recording", content=b"held call", headers=app
        ).json()
        http.put("/v1/subjects/q/records/profile?category=account", json={"a": 1}, headers=app)
        http.post(
            "/v1/holds",
            json={"subject_ref": "h", "reason": "litigation", "reference": "L"},
            headers=keys["officer"],
        )
        assert _later(server, apply_retention, 89) == 0
        assert _later(server, apply_retention, 91) >= 1
        gone = http.get(f"/v1/subjects/q/artefacts/{old['id']}/content", headers=app)
        kept = http.get(f"/v1/subjects/h/artefacts/{held['id']}/content", headers=app)
        account = http.get("/v1/subjects/q/records/profile", headers=app)
    assert gone.status_code == 410
    assert kept.status_code == 200
    assert account.status_code == 200


def test_statutory_retention_keeps_billing_through_an_erasure_until_it_passes(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        http.patch(
            "/v1/tenant/settings",
            json={"retention": {"billing": {"keep_at_least_days": 30, "delete_after_days": 60}}},
            headers=tenant.auth(),
        )
        invoice = http.post(
            "/v1/subjects/s/artefacts?category=billing", content=b"invoice", headers=keys["app"]
        )
        http.post("/v1/subjects/s/artefacts?category=support", content=b"chat", headers=keys["app"])
        erasure = http.post("/v1/subjects/s/erasure", headers=keys["privacy"]).json()
        run_worker_pass(server)
        shown = _erasure(http, keys["privacy"], erasure["id"])
        url = f"/v1/subjects/s/artefacts/{invoice.json()['id']}/content"
        by_app, by_officer = (
            http.get(url, headers=keys["app"]),
            http.get(url, headers=keys["officer"]),
        )
        _later(server, run_due_erasures, 31)
        run_worker_pass(server)  # the shred ledger completes what the executor shredded
        done = _erasure(http, keys["privacy"], erasure["id"])
        after = http.get(url, headers=keys["officer"])
    assert shown["status"] == "held" and shown["held"] == []
    assert [r["category"] for r in shown["retained"]] == ["billing"]
    until = _at(shown["retained"][0]["until"]) - _at(shown["requested_at"])
    assert timedelta(days=29, hours=23) < until < timedelta(days=30, minutes=1)
    assert problem(by_app)["type"].endswith("/restricted")
    assert by_officer.status_code == 200
    assert done["status"] == "completed" and "billing" in {s["category"] for s in done["shredded"]}
    assert after.status_code in (404, 410)


def _erasure(http: httpx.Client, headers: dict[str, str], erasure_id: str) -> Any:
    return http.get(f"/v1/erasures/{erasure_id}", headers=headers).json()
