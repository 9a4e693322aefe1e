"""Red team 17: what a hold covers, against erasures already under way. A hold placed
during an erasure's grace period keeps exactly its categories; a second hold placed while
an erasure is held keeps it after the first is released; odd category spellings are
refused rather than stored as a hold that covers nothing. Jobs run by hand (tests/jobs.py)
on a vault of the module's own."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.helpers import auth, create_key, put_record, record_url, subject_url, uploaded
from tests.jobs import run_worker_pass
from tests.support import ServerThread, Tenant, problem


@pytest.fixture(scope="module")
def server(own_vault: ServerThread) -> ServerThread:
    return own_vault


def _keys(http: httpx.Client, tenant: Tenant) -> dict[str, dict[str, Any]]:
    return {
        "app": create_key(http, tenant, ["ingest", "read"]),
        "privacy": create_key(http, tenant, ["erasure"]),
        "officer": create_key(http, tenant, ["compliance"]),
    }


def _hold(http: httpx.Client, officer: dict[str, Any], **fields: Any) -> dict[str, Any]:
    response = http.post("/v1/holds", json={"reference": "RT17", **fields}, headers=auth(officer))
    assert response.status_code == 201, response.text
    hold: dict[str, Any] = response.json()
    return hold


def _erasure(http: httpx.Client, privacy: dict[str, Any], erasure_id: str) -> dict[str, Any]:
    shown: dict[str, Any] = http.get(f"/v1/erasures/{erasure_id}", headers=auth(privacy)).json()
    return shown


@pytest.mark.parametrize(
    "categories",
    [["Recording"], ["recordings"], [" recording"], ["recording "], [], "recording",
     [1], [None], ["recording", "RECORDING"], ["re\u0441ording"], {"recording": True}],
)  # fmt: skip
def test_odd_hold_categories_are_422_naming_the_field(
    server: ServerThread, tenant: Tenant, categories: Any
) -> None:
    with server.client() as http:
        officer = create_key(http, tenant, ["compliance"])
        answer = http.post(
            "/v1/holds",
            json={"reason": "litigation", "reference": "R", "categories": categories},
            headers=auth(officer),
        )
        listed = http.get("/v1/holds", headers=auth(officer)).json()["items"]
    assert answer.status_code == 422, answer.text
    assert "categories" in [e["field"] for e in problem(answer)["errors"]]
    assert listed == []


def test_a_hold_placed_in_the_grace_period_keeps_exactly_its_categories(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        assert http.patch(
            "/v1/tenant/settings", json={"erasure_grace_hours": 1}, headers=tenant.auth()
        ).status_code == 200  # fmt: skip
        ticket = uploaded(http, keys["app"], "rt17-grace", b"ticket", category="support")
        call = uploaded(http, keys["app"], "rt17-grace", b"call", category="recording")
        erasure = http.post(subject_url("rt17-grace", "erasure"), headers=auth(keys["privacy"]))
        assert erasure.status_code == 202, erasure.text
        hold = _hold(
            http, keys["officer"], subject_ref="rt17-grace", categories=["support"],
            reason="billing",
        )  # fmt: skip
        run_worker_pass(server, days=1)
        held = _erasure(http, keys["privacy"], erasure.json()["id"])
        kept = http.get(
            subject_url("rt17-grace", "artefacts", ticket["id"], "content"),
            headers=auth(keys["officer"]),
        )
        shredded = http.get(
            subject_url("rt17-grace", "artefacts", call["id"], "content"),
            headers=auth(keys["officer"]),
        )
        released = http.post(
            f"/v1/holds/{hold['id']}/release",
            json={"reason": "paid"},
            headers=auth(keys["officer"]),
        )
        run_worker_pass(server, days=1)
        done = _erasure(http, keys["privacy"], erasure.json()["id"])
    assert held["status"] == "held", held
    assert held["held"] == [{"category": "support", "hold_ids": [hold["id"]]}]
    assert {s["category"] for s in held["shredded"]} >= {"recording"}
    assert kept.status_code == 200 and kept.content == b"ticket"
    assert shredded.status_code in (404, 410)
    assert released.status_code == 200
    assert done["status"] == "completed", done
    assert "support" in {s["category"] for s in done["shredded"]}


def test_a_second_hold_placed_while_an_erasure_is_held_outlives_the_first(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        ticket = uploaded(http, keys["app"], "rt17-two", b"ticket", category="support")
        first = _hold(
            http, keys["officer"], subject_ref="rt17-two", categories=["support"], reason="billing"
        )
        erasure = http.post(subject_url("rt17-two", "erasure"), headers=auth(keys["privacy"]))
        run_worker_pass(server)
        assert _erasure(http, keys["privacy"], erasure.json()["id"])["status"] == "held"
        # A tenant-wide hold, all categories, placed while the erasure waits.
        second = _hold(http, keys["officer"], reason="regulatory")
        released = http.post(
            f"/v1/holds/{first['id']}/release",
            json={"reason": "paid"},
            headers=auth(keys["officer"]),
        )
        run_worker_pass(server)
        after = _erasure(http, keys["privacy"], erasure.json()["id"])
        kept = http.get(
            subject_url("rt17-two", "artefacts", ticket["id"], "content"),
            headers=auth(keys["officer"]),
        )
        by_app = http.get(
            subject_url("rt17-two", "artefacts", ticket["id"], "content"), headers=auth(keys["app"])
        )
        released_second = http.post(
            f"/v1/holds/{second['id']}/release", json={"reason": "closed"},
            headers=auth(keys["officer"]),
        )  # fmt: skip
        run_worker_pass(server)
        done = _erasure(http, keys["privacy"], erasure.json()["id"])
    assert released.status_code == 200
    assert after["status"] == "held", after
    assert after["held"] == [{"category": "support", "hold_ids": [second["id"]]}]
    assert kept.status_code == 200 and kept.content == b"ticket"
    assert problem(by_app)["type"].endswith("/restricted")
    assert released_second.status_code == 200
    assert done["status"] == "completed", done


def test_a_replaced_record_outside_the_holds_categories_is_not_kept(
    server: ServerThread, tenant: Tenant
) -> None:
    """A hold on `billing` only does not keep an `account` record's old version; one on
    `account` does, readable by compliance and not by the application."""
    with server.client() as http:
        keys = _keys(http, tenant)
        reader = create_key(http, tenant, ["read"])
        _hold(
            http, keys["officer"], subject_ref="rt17-rec", categories=["billing"], reason="billing"
        )
        assert put_record(http, keys["app"], "rt17-rec", "profile", b'{"v": 1}').status_code == 201
        assert put_record(http, keys["app"], "rt17-rec", "profile", b'{"v": 2}').status_code == 200
        unheld_versions = http.get(
            record_url("rt17-rec", "profile") + "/versions", headers=auth(keys["officer"])
        )
        _hold(
            http, keys["officer"], subject_ref="rt17-rec", categories=["account"], reason="billing"
        )
        assert put_record(http, keys["app"], "rt17-rec", "profile", b'{"v": 3}').status_code == 200
        held_versions = http.get(
            record_url("rt17-rec", "profile") + "/versions", headers=auth(keys["officer"])
        )
        by_reader = http.get(record_url("rt17-rec", "profile") + "/versions", headers=auth(reader))
        old = http.get(
            record_url("rt17-rec", "profile") + "/versions/2", headers=auth(keys["officer"])
        )
        old_by_reader = http.get(
            record_url("rt17-rec", "profile") + "/versions/2", headers=auth(reader)
        )
    assert unheld_versions.status_code == 200 and unheld_versions.json()["items"] == []
    assert [v["version"] for v in held_versions.json()["items"]] == [2]
    assert by_reader.status_code == 403 and old_by_reader.status_code == 403
    assert old.status_code == 200 and old.json() == {"v": 2}


def test_removing_a_tenant_category_does_not_unhold_its_data(
    server: ServerThread, tenant: Tenant
) -> None:
    """A tenant's own category named by a hold, then dropped from the settings by one
    admin key: the hold keeps covering the data written in it through an erasure."""
    with server.client() as http:
        keys = _keys(http, tenant)
        assert http.patch(
            "/v1/tenant/settings", json={"categories": ["chat"]}, headers=tenant.auth()
        ).status_code == 200  # fmt: skip
        chat = uploaded(http, keys["app"], "rt17-chat", b"hello", category="chat")
        hold = _hold(
            http, keys["officer"], subject_ref="rt17-chat", categories=["chat"],
            reason="litigation",
        )  # fmt: skip
        dropped = http.patch("/v1/tenant/settings", json={"categories": []}, headers=tenant.auth())
        erasure = http.post(subject_url("rt17-chat", "erasure"), headers=auth(keys["privacy"]))
        run_worker_pass(server)
        shown = _erasure(http, keys["privacy"], erasure.json()["id"])
        kept = http.get(
            subject_url("rt17-chat", "artefacts", chat["id"], "content"),
            headers=auth(keys["officer"]),
        )
        hold_now = http.get(f"/v1/holds/{hold['id']}", headers=auth(keys["officer"]))
    assert dropped.status_code in (200, 409, 422), dropped.text
    assert hold_now.status_code == 200, hold_now.text
    assert shown["status"] == "held", shown
    assert shown["held"] == [{"category": "chat", "hold_ids": [hold["id"]]}]
    assert kept.status_code == 200 and kept.content == b"hello"


def test_what_a_hold_keeps_after_an_erasure_is_out_of_the_applications_reach_on_every_path(
    server: ServerThread, tenant: Tenant
) -> None:
    """Restriction of processing: after the erasure only compliance reads the kept
    category, not through the export, a playback link, the record routes or a listing."""
    with server.client() as http:
        keys = _keys(http, tenant)
        reader = create_key(http, tenant, ["read"])
        ticket = uploaded(http, keys["app"], "rt17-reach", b"ticket text", category="support")
        assert put_record(
            http, keys["app"], "rt17-reach", "case", b'{"secret": "rt17-kept-value"}', "support"
        ).status_code == 201  # fmt: skip
        _hold(
            http,
            keys["officer"],
            subject_ref="rt17-reach",
            categories=["support"],
            reason="billing",
        )
        erasure = http.post(subject_url("rt17-reach", "erasure"), headers=auth(keys["privacy"]))
        run_worker_pass(server)
        assert _erasure(http, keys["privacy"], erasure.json()["id"])["status"] == "held"
        export = http.get(subject_url("rt17-reach", "export"), headers=auth(reader))
        link = http.post(
            subject_url("rt17-reach", "artefacts", ticket["id"], "links"), json={},
            headers=auth(reader),
        )  # fmt: skip
        record = http.get(record_url("rt17-reach", "case"), headers=auth(reader))
        records = http.get(subject_url("rt17-reach", "records"), headers=auth(reader))
        meta = http.get(subject_url("rt17-reach", "artefacts", ticket["id"]), headers=auth(reader))
        officer_export = http.get(
            subject_url("rt17-reach", "export"), headers=auth(keys["officer"])
        )
    assert b"ticket text" not in export.content and b"rt17-kept-value" not in export.content
    assert export.status_code in (403, 404, 410) or (
        export.status_code == 200 and b"ticket text" not in export.content
    ), export.status_code
    assert link.status_code in (403, 404, 410), link.text
    assert record.status_code in (403, 404, 410) and b"rt17-kept-value" not in record.content
    assert records.status_code in (403, 404, 410) or records.json()["items"] == []
    assert meta.status_code in (403, 404, 410), meta.text
    assert officer_export.status_code == 200 and b"ticket text" in officer_export.content


def test_a_hold_placed_before_the_subject_exists_covers_every_spelling_of_its_ref(
    server: ServerThread, tenant: Tenant
) -> None:
    """The hold names the reference decomposed (NFD); the application later writes it
    composed (NFC): one subject, so the hold covers it and DELETE answers 409 naming it."""
    with server.client() as http:
        keys = _keys(http, tenant)
        hold = _hold(http, keys["officer"], subject_ref="rt17-Jose\u0301", reason="litigation")
        stored = uploaded(http, keys["app"], "rt17-Jos\u00e9", b"call")
        refused = http.delete(
            subject_url("rt17-Jos\u00e9", "artefacts", stored["id"]), headers=auth(keys["app"])
        )
        listed = http.get(
            "/v1/holds", params={"subject_ref": "rt17-Jos\u00e9"}, headers=auth(keys["officer"])
        )
    assert refused.status_code == 409, refused.text
    assert problem(refused)["holds"] == [hold["id"]]
    assert [h["id"] for h in listed.json()["items"]] == [hold["id"]]
