"""Held erasures wait in a queue that never starves (DESIGN.md: a released or expired last
hold lets waiting erasures complete at once), however many erasures ahead of them stay
held for years; and one subject gets one open erasure however many requests race."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import DataKeys, artefact_url, auth, create_key, data_keys, rfc3339, uploaded
from tests.jobs import expire_hold, run_worker_pass
from tests.support import ServerThread, Tenant, make_tenant, new_database, running_server
from vault.config import Settings
from vault.runtime import operator_context
from workers.erasure import run_due_erasures

# More than the executor ever retried in one pass before (20), all older than the
# erasure under test and all staying held.
STAY_HELD = 25


@dataclass(frozen=True)
class Backlog:
    tenant: Tenant
    keys: DataKeys
    privacy: dict[str, Any]
    stay_held: list[str]  # erasure ids, oldest first


def _shown(http: httpx.Client, key: dict[str, Any], erasure_id: str) -> dict[str, Any]:
    response = http.get(f"/v1/erasures/{erasure_id}", headers=auth(key))
    assert response.status_code == 200, response.text
    shown: dict[str, Any] = response.json()
    return shown


def _place_hold(http: httpx.Client, key: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = {"reason": "billing", "reference": "INV-1", **fields}
    response = http.post("/v1/holds", json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    hold: dict[str, Any] = response.json()
    return hold


def _erase(http: httpx.Client, key: dict[str, Any], ref: str) -> dict[str, Any]:
    response = http.post(f"/v1/subjects/{ref}/erasure", headers=auth(key))
    assert response.status_code == 202, response.text
    erasure: dict[str, Any] = response.json()
    return erasure


@pytest.fixture(scope="module")
def backlog(quiet_vault: ServerThread) -> Backlog:
    """A tenant whose support data is under a hold nobody releases, with STAY_HELD older
    erasures held by it. On a vault of the module's own: a pass of the jobs then works
    through these erasures, not through every erasure the session's vault has queued."""
    server = quiet_vault
    tenant = make_tenant(server.settings, server.database_url)
    with server.client() as http:
        keys = data_keys(http, tenant)
        privacy = create_key(http, tenant, ["erasure"])
        _place_hold(http, keys.compliance, categories=["support"], reason="regulatory")
        ids = []
        for n in range(STAY_HELD):
            uploaded(http, keys.ingest, f"kept-{n}", b"ticket", category="support")
            ids.append(_erase(http, privacy, f"kept-{n}")["id"])
        run_worker_pass(server)
        for erasure_id in ids:
            assert _shown(http, privacy, erasure_id)["status"] == "held"
    return Backlog(tenant, keys, privacy, ids)


def _held_by(
    server: ServerThread, http: httpx.Client, backlog: Backlog, erasure_id: str, hold_id: str
) -> dict[str, Any]:
    """The erasure after a pass of the jobs: held by `hold_id` alone."""
    run_worker_pass(server)
    shown = _shown(http, backlog.privacy, erasure_id)
    assert shown["status"] == "held", shown
    assert shown["held"] and all(h["hold_ids"] == [hold_id] for h in shown["held"]), shown
    return shown


def _after_one_pass(
    server: ServerThread, http: httpx.Client, backlog: Backlog, erasure_id: str
) -> dict[str, Any]:
    """One pass of the jobs (executor, then shred ledger), as each job's next round would
    run: completion within one round of each is what lets it complete at once however
    many erasures ahead of it stay held."""
    run_worker_pass(server)
    return _shown(http, backlog.privacy, erasure_id)


def test_a_released_hold_lets_its_erasure_complete_behind_many_that_stay_held(
    quiet_vault: ServerThread, backlog: Backlog
) -> None:
    server = quiet_vault
    keys = backlog.keys
    with server.client() as http:
        call = uploaded(http, keys.ingest, "late", b"call", category="recording")
        hold = _place_hold(http, keys.compliance, subject_ref="late")
        erasure = _erase(http, backlog.privacy, "late")
        _held_by(server, http, backlog, erasure["id"], hold["id"])
        officer = auth(keys.compliance)
        released = http.post(
            f"/v1/holds/{hold['id']}/release", json={"reason": "paid"}, headers=officer
        )
        assert released.status_code == 200, released.text
        done = _after_one_pass(server, http, backlog, erasure["id"])
        content = http.get(artefact_url("late", call["id"], "content"), headers=officer)
        oldest = _shown(http, backlog.privacy, backlog.stay_held[0])
    assert done["status"] == "completed", done
    assert {s["category"] for s in done["shredded"]} >= {"recording", "identity"}
    assert content.status_code in (404, 410)
    assert oldest["status"] == "held"  # what the other hold keeps stays kept


def test_an_expired_hold_lets_its_erasure_complete_behind_many_that_stay_held(
    quiet_vault: ServerThread, backlog: Backlog
) -> None:
    server = quiet_vault
    keys = backlog.keys
    with server.client() as http:
        call = uploaded(http, keys.ingest, "lapsing", b"call", category="recording")
        expires = rfc3339(datetime.now(UTC) + timedelta(hours=1))
        hold = _place_hold(http, keys.compliance, subject_ref="lapsing", expires_at=expires)
        erasure = _erase(http, backlog.privacy, "lapsing")
        _held_by(server, http, backlog, erasure["id"], hold["id"])
        expire_hold(server.database_url, hold["id"])
        done = _after_one_pass(server, http, backlog, erasure["id"])
        content = http.get(
            artefact_url("lapsing", call["id"], "content"), headers=auth(keys.compliance)
        )
    assert done["status"] == "completed", done
    assert "recording" in {s["category"] for s in done["shredded"]}
    assert content.status_code in (404, 410)


def test_a_shortened_statutory_retention_lets_a_held_erasure_complete_within_a_few_passes(
    pg_admin_url: str, tmp_path: Path
) -> None:
    """A shortened keep_at_least_days binds data written before it only after the closure
    delay (60 days); then the executor lets the held erasure go within a few passes."""
    url = new_database(pg_admin_url)  # the executor runs with a moved clock: own database
    settings = Settings(data_dir=tmp_path / "data", database_url=url)
    tenant = make_tenant(settings, url)

    def keep_billing(days: int) -> None:
        rules = {"retention": {"billing": {"keep_at_least_days": days}}}
        response = http.patch("/v1/tenant/settings", json=rules, headers=tenant.auth())
        assert response.status_code == 200, response.text

    async def passes_until_let_go(erasure_id: str) -> int:
        later = datetime.now(UTC) + timedelta(days=settings.closure_delay_days + 1)
        async with operator_context(settings, url) as ctx:
            for done in range(1, 4):
                await run_due_erasures(ctx.db, ctx.keyring, now=later)
                async with ctx.db.tenant_tx(tenant.id) as conn:
                    status = await conn.fetchval(
                        "SELECT status FROM erasures WHERE id = $1", uuid.UUID(erasure_id)
                    )
                if status != "held":
                    return done
        return 0

    with running_server(settings, url) as server, server.client() as http:
        keys = data_keys(http, tenant)
        privacy = create_key(http, tenant, ["erasure"])
        keep_billing(30)
        uploaded(http, keys.ingest, "bea", b"invoice", category="billing")
        erasure = _erase(http, privacy, "bea")
        run_worker_pass(server)
        held = _shown(http, privacy, erasure["id"])
        keep_billing(1)
        passes = asyncio.run(passes_until_let_go(erasure["id"]))
        run_worker_pass(server)  # the shred ledger completes what the executor shredded
        done = _shown(http, privacy, erasure["id"])
    assert [r["category"] for r in held["retained"]] == ["billing"]
    assert 1 <= passes <= 3
    assert done["status"] == "completed" and "billing" in {s["category"] for s in done["shredded"]}


def test_concurrent_requests_to_erase_a_subject_never_seen_get_one_erasure(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        privacy = create_key(http, tenant, ["erasure"])
    ref = f"never-seen-{uuid.uuid4().hex[:8]}"

    async def all_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            return list(
                await asyncio.gather(
                    *(
                        client.post(f"/v1/subjects/{ref}/erasure", headers=auth(privacy))
                        for _ in range(10)
                    )
                )
            )

    responses = asyncio.run(all_at_once())
    with server.client() as http:
        listed = http.get(
            "/v1/erasures", params={"subject_ref": ref}, headers=auth(privacy)
        ).json()["items"]
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 9 + [202], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert [e["id"] for e in listed] == [responses[0].json()["id"]]
