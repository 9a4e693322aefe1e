"""Legal holds over HTTP: placing, listing, amending, two-key release, and what a hold
stops (artefact and record deletion, record replacement shredding the old version)."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.helpers import create_key, operator_key
from tests.jobs import expire_hold, run_worker_pass
from tests.support import ServerThread, Tenant, bearer, problem
from vault.db.database import Database
from workers.hold_expiry import journal_expired_holds


# Its worker passes run on a vault of this module's own (tests/conftest.py `own_vault`):
# on the session's they worked through every erasure and hold queued all session.
@pytest.fixture(scope="module")
def server(own_vault: ServerThread) -> ServerThread:
    return own_vault


def _keys(http: httpx.Client, tenant: Tenant) -> dict[str, dict[str, str]]:
    return {
        "app": bearer(create_key(http, tenant, ["ingest", "read"])["secret"]),
        "officer": bearer(create_key(http, tenant, ["compliance"])["secret"]),
    }


def _place(http: httpx.Client, headers: dict[str, str], **body: Any) -> httpx.Response:
    body.setdefault("reason", "billing")
    body.setdefault("reference", "CASE-1")
    return http.post("/v1/holds", json=body, headers=headers)


def _upload(http: httpx.Client, headers: dict[str, str], ref: str, category: str) -> str:
    created = http.post(
        f"/v1/subjects/{ref}/artefacts?category={category}",
        content=os.urandom(2048),
        headers=headers,
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_held_artefact_cannot_be_deleted_and_the_holds_are_named(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        held = _upload(http, keys["app"], "alice", "billing")
        free = _upload(http, keys["app"], "alice", "recording")
        placed = _place(http, keys["officer"], subject_ref="alice", categories=["billing"])
        refused = http.delete(f"/v1/subjects/alice/artefacts/{held}", headers=keys["app"])
        allowed = http.delete(f"/v1/subjects/alice/artefacts/{free}", headers=keys["app"])
        still = http.get(f"/v1/subjects/alice/artefacts/{held}/content", headers=keys["app"])
    assert placed.status_code == 201, placed.text
    hold = placed.json()
    assert hold["subject_ref"] == "alice" and hold["categories"] == ["billing"] and hold["active"]
    assert problem(refused)["status"] == 409
    assert refused.json()["holds"] == [hold["id"]]
    assert allowed.status_code == 204
    assert still.status_code == 200


def test_held_record_cannot_be_deleted_and_the_holds_are_named(
    server: ServerThread, tenant: Tenant
) -> None:
    """A record's DELETE under hold: 409 naming every hold that keeps it (API.md "Records",
    "Artefacts"), the value stays; a record of a category no hold covers is deleted."""
    with server.client() as http:
        keys = _keys(http, tenant)
        base = "/v1/subjects/hana/records"
        for name, category in (("invoice", "billing"), ("prefs", "account")):
            written = http.put(
                f"{base}/{name}", params={"category": category}, json={"n": name},
                headers=keys["app"],
            )  # fmt: skip
            assert written.status_code == 201, written.text
        first = _place(http, keys["officer"], subject_ref="hana", categories=["billing"])
        second = _place(
            http, keys["officer"], subject_ref="hana", reason="fraud_investigation",
            reference="F-2",
        )  # fmt: skip
        elsewhere = _place(http, keys["officer"], subject_ref="someone-else")
        assert all(p.status_code == 201 for p in (first, second, elsewhere))
        refused = http.delete(f"{base}/invoice", headers=keys["app"])
        still = http.get(f"{base}/invoice", headers=keys["app"])
        # `second` covers every category of hana: release it, then only `first` keeps
        # the invoice and only `first` is named.
        http.post(
            f"/v1/holds/{second.json()['id']}/release", json={"reason": "x"},
            headers=keys["officer"],
        )  # fmt: skip
        refused_again = http.delete(f"{base}/invoice", headers=keys["app"])
        allowed = http.delete(f"{base}/prefs", headers=keys["app"])
    assert problem(refused)["status"] == 409
    assert sorted(refused.json()["holds"]) == sorted([first.json()["id"], second.json()["id"]])
    assert still.status_code == 200 and still.json() == {"n": "invoice"}
    assert problem(refused_again)["status"] == 409
    assert refused_again.json()["holds"] == [first.json()["id"]]
    assert allowed.status_code == 204, allowed.text


def test_hold_on_a_subject_not_yet_seen_covers_it_once_it_appears(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        placed = _place(
            http, keys["officer"], subject_ref="future-user", reason="fraud_investigation"
        )
        artefact = _upload(http, keys["app"], "future-user", "support")
        refused = http.delete(f"/v1/subjects/future-user/artefacts/{artefact}", headers=keys["app"])
        other = _upload(http, keys["app"], "someone-else", "support")
        allowed = http.delete(f"/v1/subjects/someone-else/artefacts/{other}", headers=keys["app"])
    assert placed.status_code == 201
    assert refused.status_code == 409
    assert allowed.status_code == 204


def test_tenant_wide_hold_blocks_record_deletion_and_keeps_replaced_versions(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        assert (
            http.put(
                "/v1/subjects/bob/records/profile?category=account",
                json={"v": 1},
                headers=keys["app"],
            ).status_code
            == 201
        )
        placed = _place(http, keys["officer"], reason="regulatory")
        replaced = http.put("/v1/subjects/bob/records/profile", json={"v": 2}, headers=keys["app"])
        deleted = http.delete("/v1/subjects/bob/records/profile", headers=keys["app"])
        current = http.get("/v1/subjects/bob/records/profile", headers=keys["app"])
    assert placed.status_code == 201 and placed.json()["scope"] == "tenant"
    assert replaced.status_code == 200
    assert deleted.status_code == 409
    assert current.json() == {"v": 2}

    async def versions() -> list[asyncpg.Record]:
        db = await Database.connect(server.database_url, max_size=1)
        try:
            async with db.tenant_tx(tenant.id) as conn:
                return await conn.fetch(
                    "SELECT version, current, value_sealed IS NOT NULL AS kept FROM records"
                    " WHERE tenant_id = $1 ORDER BY version",
                    tenant.id,
                )
        finally:
            await db.close()

    # The replaced version is kept (sealed, for compliance), not shredded.
    assert [(r["version"], r["current"], r["kept"]) for r in asyncio.run(versions())] == [
        (1, False, True),
        (2, True, True),
    ]


def test_billing_hold_releases_with_one_key_and_deletion_proceeds(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        artefact = _upload(http, keys["app"], "carol", "billing")
        hold = _place(http, keys["officer"], subject_ref="carol").json()
        assert (
            http.delete(f"/v1/subjects/carol/artefacts/{artefact}", headers=keys["app"]).status_code
            == 409
        )
        released = http.post(
            f"/v1/holds/{hold['id']}/release",
            json={"reason": "invoice paid"},
            headers=keys["officer"],
        )
        deleted = http.delete(f"/v1/subjects/carol/artefacts/{artefact}", headers=keys["app"])
        again = http.post(
            f"/v1/holds/{hold['id']}/release", json={"reason": "twice"}, headers=keys["officer"]
        )
        shown = http.get(f"/v1/holds/{hold['id']}", headers=keys["officer"]).json()
    assert released.status_code == 200 and released.json()["released_at"]
    assert deleted.status_code == 204
    assert again.status_code == 409
    assert [e["action"] for e in shown["events"]] == ["placed", "released"]
    assert shown["events"][1]["reason"] == "invoice paid"
    assert shown["events"][1]["ip"] == "127.0.0.1"


def test_litigation_hold_needs_a_second_different_compliance_key(
    server: ServerThread, tenant: Tenant
) -> None:
    # Another person: a key the operator issued, not one the tenant's admin minted.
    second_officer = operator_key(server, tenant, ["compliance"], "second-officer")
    with server.client() as http:
        keys = _keys(http, tenant)
        artefact = _upload(http, keys["app"], "dave", "recording")
        hold = _place(http, keys["officer"], subject_ref="dave", reason="litigation").json()
        url = f"/v1/holds/{hold['id']}/release"
        first = http.post(url, json={"reason": "case closed"}, headers=keys["officer"])
        same = http.post(url, json={"reason": "me again"}, headers=keys["officer"])
        still_held = http.delete(f"/v1/subjects/dave/artefacts/{artefact}", headers=keys["app"])
        second = http.post(
            url, json={"reason": "confirmed"}, headers=bearer(second_officer["secret"])
        )
        deleted = http.delete(f"/v1/subjects/dave/artefacts/{artefact}", headers=keys["app"])
    assert first.status_code == 202 and first.json()["release_requested_by"]
    assert first.json()["released_at"] is None
    assert problem(same)["status"] == 409
    assert still_held.status_code == 409
    assert second.status_code == 200 and second.json()["released_at"]
    assert deleted.status_code == 204


def test_expired_hold_stops_covering_and_its_expiry_is_journaled(
    server: ServerThread, tenant: Tenant
) -> None:
    expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    with server.client() as http:
        keys = _keys(http, tenant)
        artefact = _upload(http, keys["app"], "erin", "support")
        hold = _place(http, keys["officer"], subject_ref="erin", expires_at=expires).json()
        assert (
            http.delete(f"/v1/subjects/erin/artefacts/{artefact}", headers=keys["app"]).status_code
            == 409
        )
        expire_hold(server.database_url, hold["id"])
        deleted = http.delete(f"/v1/subjects/erin/artefacts/{artefact}", headers=keys["app"])

        async def journal() -> int:
            db = await Database.connect(server.database_url, max_size=1)
            try:
                return await journal_expired_holds(db)
            finally:
                await db.close()

        assert asyncio.run(journal()) >= 1
        shown = http.get(f"/v1/holds/{hold['id']}", headers=keys["officer"]).json()
        active = http.get("/v1/holds?active=true", headers=keys["officer"]).json()["items"]
    assert deleted.status_code == 204
    assert [e["action"] for e in shown["events"]] == ["placed", "expired"]
    assert hold["id"] not in [h["id"] for h in active]


def test_hold_expiry_can_be_extended_but_not_shortened(
    server: ServerThread, tenant: Tenant
) -> None:
    soon = datetime.now(UTC) + timedelta(days=10)
    with server.client() as http:
        keys = _keys(http, tenant)
        hold = _place(http, keys["officer"], expires_at=soon.isoformat()).json()
        url = f"/v1/holds/{hold['id']}"
        extension = {"expires_at": (soon + timedelta(days=30)).isoformat(), "note": "x"}
        later = http.patch(url, json=extension, headers=keys["officer"])
        earlier = http.patch(url, json={"expires_at": soon.isoformat()}, headers=keys["officer"])
    assert later.status_code == 200 and later.json()["note"] == "x"
    assert [e["action"] for e in later.json()["events"]] == ["placed", "extended", "annotated"]
    assert problem(earlier)["status"] == 422


def test_bad_hold_requests_are_422_naming_the_field(server: ServerThread, tenant: Tenant) -> None:
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    cases: dict[str, dict[str, Any]] = {
        "reason": {"reason": "curiosity"},
        "reference": {"reference": ""},
        "categories": {"categories": ["nonexistent"]},
        "expires_at": {"expires_at": past},
        "subject_ref": {"subject_ref": "x" * 201},
        "colour": {"colour": "red"},
    }
    with server.client() as http:
        officer = _keys(http, tenant)["officer"]
        for field, body in cases.items():
            response = _place(http, officer, **body)
            assert response.status_code == 422, (field, response.text)
            assert field in [e["field"] for e in response.json()["errors"]]


def test_holds_need_the_compliance_scope_and_stay_in_their_tenant(
    server: ServerThread, new_tenant: Any
) -> None:
    owner, other = new_tenant(), new_tenant()
    with server.client() as http:
        keys = _keys(http, owner)
        hold = _place(http, keys["officer"]).json()
        app_key = http.post(
            "/v1/holds", json={"reason": "billing", "reference": "x"}, headers=keys["app"]
        )
        intruder = bearer(create_key(http, other, ["compliance"])["secret"])
        foreign = [
            http.get(f"/v1/holds/{hold['id']}", headers=intruder),
            http.patch(f"/v1/holds/{hold['id']}", json={"note": "x"}, headers=intruder),
            http.post(f"/v1/holds/{hold['id']}/release", json={"reason": "x"}, headers=intruder),
        ]
        listed = http.get("/v1/holds", headers=intruder).json()["items"]
        unknown = http.get(f"/v1/holds/{uuid.uuid4()}", headers=keys["officer"])
    assert app_key.status_code == 403
    assert [r.status_code for r in foreign] == [404, 404, 404]
    assert listed == []
    assert unknown.status_code == 404


def test_hold_impact_counts_what_a_release_would_shred(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        privacy = bearer(create_key(http, tenant, ["erasure"])["secret"])
        for ref in ("i1", "i2"):
            _upload(http, keys["app"], ref, "support")
        only = _place(
            http, keys["officer"], categories=["support"], reason="fraud_investigation"
        ).json()
        for ref in ("i1", "i2"):
            http.post(f"/v1/subjects/{ref}/erasure", headers=privacy)
        run_worker_pass(server)
        statuses = {e["status"] for e in http.get("/v1/erasures", headers=privacy).json()["items"]}
        assert statuses == {"held"}
        alone = http.get(f"/v1/holds/{only['id']}/impact", headers=keys["officer"]).json()
        second = _place(http, keys["officer"], reason="regulatory").json()
        shared = http.get(f"/v1/holds/{only['id']}/impact", headers=keys["officer"]).json()
        unknown = http.get(f"/v1/holds/{uuid.uuid4()}/impact", headers=keys["officer"])
    assert alone["categories"]["support"] == {"keys": 2, "erasures": 2}
    assert second["id"]
    # Another active hold would still keep them: releasing this one shreds nothing now.
    assert shared["categories"] == {} or "support" not in shared["categories"]
    assert unknown.status_code == 404


def test_holds_can_be_listed_by_reason(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        billing = _place(http, keys["officer"], reason="billing").json()
        litigation = _place(http, keys["officer"], reason="litigation").json()
        only = http.get("/v1/holds", params={"reason": "litigation"}, headers=keys["officer"])
        wrong = http.get("/v1/holds", params={"reason": "boredom"}, headers=keys["officer"])
    assert [h["id"] for h in only.json()["items"]] == [litigation["id"]]
    assert billing["id"] != litigation["id"]
    assert problem(wrong)["status"] == 422
    assert problem(wrong)["errors"][0]["field"] == "reason"
