"""Erasure end to end over HTTP: one pass of the jobs shreds the subject (run by hand,
tests/jobs.py; test_erasure_timing.py has the scheduler do it within its minute), new life
survives, holds keep what they cover, grace periods can be cancelled, the rate brake holds
back a flood."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import create_key
from tests.jobs import run_worker_pass
from tests.support import (
    ServerThread,
    Tenant,
    bearer,
    make_tenant,
    new_database,
    problem,
    running_server,
)
from vault.config import Settings
from vault.db.database import Database
from vault.observability.metrics import Metrics
from vault.runtime import operator_context
from workers.erasure import run_due_erasures
from workers.monitor import refresh_gauges


# Its worker passes run on a vault of this module's own (tests/conftest.py `own_vault`):
# on the session's they worked through every erasure and hold queued all session.
@pytest.fixture(scope="module")
def server(own_vault: ServerThread) -> ServerThread:
    return own_vault


def _keys(http: httpx.Client, tenant: Tenant) -> dict[str, dict[str, str]]:
    return {
        "app": bearer(create_key(http, tenant, ["ingest", "read"])["secret"]),
        "privacy": bearer(create_key(http, tenant, ["erasure"])["secret"]),
        "officer": bearer(create_key(http, tenant, ["compliance"])["secret"]),
    }


def _after_a_pass(
    server: ServerThread, http: httpx.Client, headers: dict[str, str], erasure_id: str
) -> Any:
    """The erasure as shown after one pass of the jobs (tests/jobs.py): the executor, then
    the shred-ledger publisher that completes it (or holds it) with its receipt."""
    run_worker_pass(server)
    return http.get(f"/v1/erasures/{erasure_id}", headers=headers).json()


def test_erasure_shreds_the_subject_and_data_written_afterwards_survives(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        app = keys["app"]
        upload = http.post(
            "/v1/subjects/zoe/artefacts?category=recording", content=os.urandom(5000), headers=app
        )
        assert (
            http.put(
                "/v1/subjects/zoe/records/profile?category=account", json={"n": 1}, headers=app
            ).status_code
            == 201
        )
        requested = http.post(
            "/v1/subjects/zoe/erasure", json={"reason": "user asked"}, headers=keys["privacy"]
        )
        # (A repeated request answers with this erasure only while it is scheduled or in
        # progress; with the executor woken at once that may be over already here, so
        # test_every_instruction.py checks it with a grace period.)
        # Written after the instruction: a new life under new keys.
        later = http.put(
            "/v1/subjects/zoe/records/after?category=account", json={"n": 2}, headers=app
        )
        erasure = requested.json()
        done = _after_a_pass(server, http, keys["privacy"], erasure["id"])
        artefact = http.get(
            f"/v1/subjects/zoe/artefacts/{upload.json()['id']}/content", headers=app
        )
        old_record = http.get("/v1/subjects/zoe/records/profile", headers=app)
        new_record = http.get("/v1/subjects/zoe/records/after", headers=app)
        listed = http.get("/v1/erasures?status=completed", headers=keys["privacy"]).json()["items"]
    assert requested.status_code == 202, requested.text
    assert set(erasure) >= {"id", "status", "requested_at", "not_before", "due_at"}
    assert later.status_code == 201
    assert done["status"] == "completed", done
    assert {s["category"] for s in done["shredded"]} == {"recording", "account", "identity"}
    assert done["held"] == [] and done["completed_at"]
    assert artefact.status_code in (404, 410)
    assert old_record.status_code in (404, 410)
    assert new_record.status_code == 200 and new_record.json() == {"n": 2}
    assert erasure["id"] in [e["id"] for e in listed]


def test_unknown_subject_gets_an_erasure_that_completes_with_nothing_shredded(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        privacy = _keys(http, tenant)["privacy"]
        requested = http.post("/v1/subjects/never-seen/erasure", headers=privacy)
        done = _after_a_pass(server, http, privacy, requested.json()["id"])
    assert requested.status_code == 202
    assert done["status"] == "completed" and done["shredded"] == []


def test_held_category_is_kept_until_the_hold_is_released(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        app = keys["app"]
        ticket = http.post(
            "/v1/subjects/yan/artefacts?category=support", content=b"ticket", headers=app
        )
        http.post("/v1/subjects/yan/artefacts?category=recording", content=b"call", headers=app)
        hold = http.post(
            "/v1/holds",
            json={
                "subject_ref": "yan",
                "categories": ["support"],
                "reason": "fraud_investigation",
                "reference": "F-9",
            },
            headers=keys["officer"],
        ).json()
        erasure = http.post("/v1/subjects/yan/erasure", headers=keys["privacy"]).json()
        held = _after_a_pass(server, http, keys["privacy"], erasure["id"])
        content = f"/v1/subjects/yan/artefacts/{ticket.json()['id']}/content"
        still = http.get(content, headers=keys["officer"])
        app_read = http.get(content, headers=app)
        app_list = http.get("/v1/subjects/yan/artefacts", headers=app)
        officer_list = http.get("/v1/subjects/yan/artefacts", headers=keys["officer"])
        http.post(
            f"/v1/holds/{hold['id']}/release", json={"reason": "paid"}, headers=keys["officer"]
        )
        done = _after_a_pass(server, http, keys["privacy"], erasure["id"])
        gone = http.get(
            f"/v1/subjects/yan/artefacts/{ticket.json()['id']}/content", headers=keys["officer"]
        )
    assert held["status"] == "held", held
    assert held["held"] == [{"category": "support", "hold_ids": [hold["id"]]}]
    assert "recording" in {s["category"] for s in held["shredded"]}
    assert still.status_code == 200 and still.content == b"ticket"
    # After the erasure, what the hold keeps is readable by compliance only.
    assert problem(app_read)["type"].endswith("/restricted")
    assert app_list.json()["items"] == []
    assert [a["category"] for a in officer_list.json()["items"]] == ["support"]
    assert done["status"] == "completed"
    assert "support" in {s["category"] for s in done["shredded"]}
    assert gone.status_code in (404, 410)


def test_erasure_in_its_grace_period_can_be_cancelled_and_not_after(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        http.patch("/v1/tenant/settings", json={"erasure_grace_hours": 48}, headers=tenant.auth())
        http.put("/v1/subjects/xia/records/p?category=account", json={}, headers=keys["app"])
        waiting = http.post("/v1/subjects/xia/erasure", headers=keys["privacy"]).json()
        cancelled = http.post(f"/v1/erasures/{waiting['id']}/cancel", headers=keys["privacy"])
        record = http.get("/v1/subjects/xia/records/p", headers=keys["app"])
        http.patch("/v1/tenant/settings", json={"erasure_grace_hours": 0}, headers=tenant.auth())
        running = http.post("/v1/subjects/xia/erasure", headers=keys["privacy"]).json()
        too_late = http.post(f"/v1/erasures/{running['id']}/cancel", headers=keys["privacy"])
    assert waiting["status"] == "scheduled"
    assert waiting["not_before"] > waiting["requested_at"]
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert record.status_code == 200
    assert running["id"] != waiting["id"]
    assert problem(too_late)["status"] == 409


def test_an_erasure_after_a_cancelled_one_shreds_the_data_from_before_it(
    server: ServerThread, tenant: Tenant
) -> None:
    """The cancelled request had started a new generation; the data from before it, and
    the data written during its grace period, are both the subject's and both go."""
    with server.client() as http:
        keys = _keys(http, tenant)
        http.patch("/v1/tenant/settings", json={"erasure_grace_hours": 48}, headers=tenant.auth())
        http.put("/v1/subjects/yara/records/old?category=account", json={}, headers=keys["app"])
        first = http.post("/v1/subjects/yara/erasure", headers=keys["privacy"]).json()
        http.put("/v1/subjects/yara/records/new?category=support", json={}, headers=keys["app"])
        http.post(f"/v1/erasures/{first['id']}/cancel", headers=keys["privacy"])
        kept_by_cancel = http.get("/v1/subjects/yara/records/old", headers=keys["app"])
        http.patch("/v1/tenant/settings", json={"erasure_grace_hours": 0}, headers=tenant.auth())
        second = http.post("/v1/subjects/yara/erasure", headers=keys["privacy"]).json()
        done = _after_a_pass(server, http, keys["privacy"], second["id"])
        old = http.get("/v1/subjects/yara/records/old", headers=keys["app"])
        new = http.get("/v1/subjects/yara/records/new", headers=keys["app"])
    assert kept_by_cancel.status_code == 200
    assert {s["category"] for s in done["shredded"]} >= {"account", "support"}
    assert old.status_code in (404, 410)
    assert new.status_code in (404, 410)


def test_rate_brake_holds_back_erasures_past_the_tenant_limit(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        http.patch(
            "/v1/tenant/settings", json={"erasure_rate_limit_per_hour": 2}, headers=tenant.auth()
        )
        results = [
            http.post(f"/v1/subjects/r{n}/erasure", headers=keys["privacy"]).json()
            for n in range(3)
        ]
        third = http.get(f"/v1/erasures/{results[2]['id']}", headers=keys["privacy"]).json()
    first_delay = _hours(results[0]["not_before"]) - _hours(results[0]["requested_at"])
    third_delay = _hours(results[2]["not_before"]) - _hours(results[2]["requested_at"])
    assert first_delay < 0.01
    assert 23.9 < third_delay <= 24.01
    assert third["rate_braked"] is True and third["status"] == "scheduled"


def _braked_gauge(database_url: str) -> int:
    async def run() -> int:
        db = await Database.connect(database_url, max_size=1)
        try:
            return (await refresh_gauges(db, Metrics())).rate_braked
        finally:
            await db.close()

    return asyncio.run(run())


def test_an_admin_can_let_a_braked_erasure_through_and_the_brake_shows_in_a_gauge(
    server: ServerThread, tenant: Tenant, new_tenant: Callable[[], Tenant]
) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        http.patch(
            "/v1/tenant/settings", json={"erasure_rate_limit_per_hour": 1}, headers=tenant.auth()
        )
        http.put("/v1/subjects/b1/records/p?category=account", json={}, headers=keys["app"])
        before = _braked_gauge(server.database_url)
        first = http.post("/v1/subjects/b0/erasure", headers=keys["privacy"]).json()
        braked = http.post("/v1/subjects/b1/erasure", headers=keys["privacy"]).json()
        while_braked = _braked_gauge(server.database_url)
        path = f"/v1/erasures/{braked['id']}/release-brake"
        not_admin = http.post(path, headers=keys["privacy"])
        other_tenant = http.post(path, headers=new_tenant().auth())
        not_braked = http.post(f"/v1/erasures/{first['id']}/release-brake", headers=tenant.auth())
        unknown = http.post(f"/v1/erasures/{uuid.uuid4()}/release-brake", headers=tenant.auth())
        released = http.post(path, headers=tenant.auth())
        again = http.post(path, headers=tenant.auth())
        after = _braked_gauge(server.database_url)
        done = _after_a_pass(server, http, keys["privacy"], braked["id"])
    assert _hours(braked["not_before"]) - _hours(braked["requested_at"]) > 23.9
    assert while_braked == before + 1 and after == before
    assert problem(not_admin)["status"] == 403
    assert problem(not_braked)["status"] == 409
    assert problem(unknown)["status"] == 404
    assert problem(other_tenant)["status"] == 404
    assert released.status_code == 200, released.text
    body = released.json()
    assert body["rate_braked"] is False and body["status"] == "scheduled"
    assert _hours(body["not_before"]) - _hours(body["requested_at"]) < 0.1
    assert problem(again)["status"] == 409
    assert done["status"] == "completed"


def test_erasures_can_be_listed_for_one_subject(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        mine = http.post("/v1/subjects/zoe%2F1/erasure", headers=keys["privacy"]).json()
        http.post("/v1/subjects/yan/erasure", headers=keys["privacy"])
        found = http.get(
            "/v1/erasures", params={"subject_ref": "zoe/1"}, headers=keys["officer"]
        ).json()["items"]
        none = http.get(
            "/v1/erasures", params={"subject_ref": "nobody"}, headers=keys["privacy"]
        ).json()["items"]
    assert [e["id"] for e in found] == [mine["id"]]
    assert none == []


def _hours(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() / 3600


def test_erasures_need_the_erasure_scope_and_stay_in_their_tenant(
    server: ServerThread, new_tenant: Any
) -> None:
    owner, other = new_tenant(), new_tenant()
    with server.client() as http:
        keys = _keys(http, owner)
        refused = http.post("/v1/subjects/q/erasure", headers=keys["app"])
        erasure = http.post("/v1/subjects/q/erasure", headers=keys["privacy"]).json()
        intruder = bearer(create_key(http, other, ["erasure"])["secret"])
        foreign = [
            http.get(f"/v1/erasures/{erasure['id']}", headers=intruder).status_code,
            http.post(f"/v1/erasures/{erasure['id']}/cancel", headers=intruder).status_code,
        ]
    assert refused.status_code == 403
    assert foreign == [404, 404]


def test_completed_erasure_has_a_receipt_that_verifies_with_the_published_key_only(
    server: ServerThread, tenant: Tenant
) -> None:
    from vault.services.receipt_verify import ReceiptInvalid, verify_signed_receipt

    with server.client() as http:
        keys = _keys(http, tenant)
        http.put("/v1/subjects/wes/records/p?category=account", json={}, headers=keys["app"])
        erasure = http.post("/v1/subjects/wes/erasure", headers=keys["privacy"]).json()
        early = http.get(f"/v1/erasures/{erasure['id']}/receipt", headers=keys["privacy"])
        done = _after_a_pass(server, http, keys["privacy"], erasure["id"])
        signed = http.get(f"/v1/erasures/{erasure['id']}/receipt", headers=keys["privacy"]).json()
        jwks = http.get("/v1/receipt-keys").json()
    assert early.status_code in (200, 409)
    receipt = verify_signed_receipt(signed, jwks)
    assert receipt["final"] is True and receipt["erasure_id"] == erasure["id"]
    assert receipt["tenant_id"] == str(tenant.id)
    assert receipt["subject_ref_hash"] == done["subject_ref_hash"]
    assert {s["key_id"] for s in receipt["shredded"]} == {s["key_id"] for s in done["shredded"]}
    assert receipt["backups_unreadable_after"] > receipt["completed_at"]
    tampered = {**signed, "receipt": {**signed["receipt"], "shredded": []}}
    try:
        verify_signed_receipt(tampered, jwks)
    except ReceiptInvalid:
        pass
    else:
        raise AssertionError("a changed receipt verified")


def test_held_erasure_has_an_interim_receipt(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        http.post("/v1/subjects/vic/artefacts?category=support", content=b"x", headers=keys["app"])
        http.post(
            "/v1/holds",
            json={"subject_ref": "vic", "reason": "litigation", "reference": "L-1"},
            headers=keys["officer"],
        )
        erasure = http.post("/v1/subjects/vic/erasure", headers=keys["privacy"]).json()
        assert _after_a_pass(server, http, keys["privacy"], erasure["id"])["status"] == "held"
        interim = http.get(f"/v1/erasures/{erasure['id']}/receipt", headers=keys["privacy"]).json()
    assert interim["receipt"]["final"] is False
    assert "support" in {h["category"] for h in interim["receipt"]["held"]}
    assert interim["alg"] == "Ed25519"


def test_data_written_between_the_request_and_the_shred_is_a_new_life_and_survives(
    pg_admin_url: str, tmp_path: Path
) -> None:
    """Both orders, with the shred held back by a grace period so that the writes after
    the request surely come before the shred: what was written before the request is
    shredded, what was written after it survives, in the same categories too."""
    url = new_database(pg_admin_url)  # the executor runs with a moved clock: own database
    settings = Settings(data_dir=tmp_path / "data", database_url=url)
    tenant = make_tenant(settings, url)
    with running_server(settings, url, run_jobs=False) as server, server.client() as http:
        keys = _keys(http, tenant)
        app = keys["app"]
        http.patch("/v1/tenant/settings", json={"erasure_grace_hours": 1}, headers=tenant.auth())
        before = http.post("/v1/subjects/ann/artefacts?category=recording", content=b"old",
                           headers=app).json()  # fmt: skip
        http.put("/v1/subjects/ann/records/before?category=account", json=1, headers=app)
        erasure = http.post("/v1/subjects/ann/erasure", headers=keys["privacy"]).json()
        after = http.post("/v1/subjects/ann/artefacts?category=recording", content=b"new",
                          headers=app).json()  # fmt: skip
        http.put("/v1/subjects/ann/records/after?category=account", json=2, headers=app)
        still_scheduled = http.get(f"/v1/erasures/{erasure['id']}", headers=keys["privacy"])

        async def shred_when_due() -> int:
            due = datetime.fromisoformat(erasure["not_before"]) + timedelta(seconds=1)
            async with operator_context(settings, url) as ctx:
                return await run_due_erasures(ctx.db, ctx.keyring, now=due)

        assert asyncio.run(shred_when_due()) == 1
        done = _after_a_pass(server, http, keys["privacy"], erasure["id"])
        old_artefact = http.get(f"/v1/subjects/ann/artefacts/{before['id']}/content", headers=app)
        old_record = http.get("/v1/subjects/ann/records/before", headers=app)
        new_artefact = http.get(f"/v1/subjects/ann/artefacts/{after['id']}/content", headers=app)
        new_record = http.get("/v1/subjects/ann/records/after", headers=app)
        subject = http.get("/v1/subjects/ann", headers=app).json()
    assert still_scheduled.json()["status"] == "scheduled"
    assert done["status"] == "completed"
    assert {s["category"] for s in done["shredded"]} == {"recording", "account", "identity"}
    assert old_artefact.status_code in (404, 410) and old_record.status_code in (404, 410)
    assert new_artefact.status_code == 200 and new_artefact.content == b"new"
    assert new_record.status_code == 200 and new_record.json() == 2
    assert subject["status"] == "active"
    assert subject["categories"]["recording"]["artefacts"] == 1
