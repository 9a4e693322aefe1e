"""Disclosures in the console over plain HTTP: the form beside the hold that asked for
them, errors beside their fields in the visitor's language, the lists on the hold's and
the subject's pages, two tenants, keys without the compliance scope, the access log."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from tests.api.helpers import access_log, auth, create_key, put_record
from tests.console.support import form_token, sign_in
from tests.support import ServerThread, Tenant


def _officer_session(http: httpx.Client, tenant: Tenant) -> dict[str, Any]:
    officer = create_key(http, tenant, ["compliance"])
    assert sign_in(http, officer["secret"]).status_code == 303
    return officer


def _hold(http: httpx.Client, officer: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = {"reason": "law_enforcement", "reference": "PV-2024-77", **fields}
    placed = http.post("/v1/holds", json=body, headers=auth(officer))
    assert placed.status_code == 201, placed.text
    hold: dict[str, Any] = placed.json()
    return hold


def _form(**fields: Any) -> dict[str, Any]:
    return {
        "recipient": "Politie Eenheid Utrecht",
        "legal_basis": "Art. 126nd Sv",
        "disclosure_reference": "PV-2024-77",
        "disclosure_categories": ["recording"],
        "description": "the calls of 2 May",
        "disclosed_at": "2024-05-03 09:15",
        **fields,
    }


def _post_disclosure(http: httpx.Client, hold_id: str, **fields: Any) -> httpx.Response:
    token = form_token(http.get(f"/console/holds/{hold_id}").text)
    return http.post(
        f"/console/holds/{hold_id}/disclosures", data={"csrf_token": token, **_form(**fields)}
    )


def test_a_disclosure_is_recorded_beside_the_hold_that_asked_for_it(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        app = create_key(http, tenant, ["ingest"])
        assert put_record(http, app, "console-disclosed", "profile", b"{}").status_code == 201
        officer = _officer_session(http, tenant)
        hold = _hold(http, officer, subject_ref="console-disclosed", categories=["recording"])
        form_page = http.get(f"/console/holds/{hold['id']}")
        recorded = _post_disclosure(http, hold["id"])
        shown = http.get(recorded.headers["location"])
        listed = http.get(
            "/v1/disclosures", params={"hold_id": hold["id"]}, headers=auth(officer)
        ).json()["items"]
    # The form starts from the hold: its case reference and categories, disclosed now.
    assert 'name="disclosure_reference" value="PV-2024-77"' in form_page.text
    assert re.search(r'value="recording" checked', form_page.text)
    # A subject hold names the subject: the form asks for none.
    assert 'name="disclosure_subject_ref"' not in form_page.text
    assert recorded.status_code == 303, recorded.text
    assert recorded.headers["location"] == f"/console/holds/{hold['id']}?disclosed=1#disclosures"
    assert "The disclosure is recorded." in shown.text
    assert "Politie Eenheid Utrecht" in shown.text and "the calls of 2 May" in shown.text
    # The subject, named by the vault's own sealed copy of its reference.
    assert "console-disclosed" in shown.text
    (entry,) = listed
    assert entry["recorded_by"] == officer["id"]
    assert entry["subject_ref_hash"] == hold["subject_ref_hash"]
    assert entry["disclosed_at"] == "2024-05-03T09:15:00Z"
    assert entry["categories"] == ["recording"]


def test_form_errors_stand_beside_their_fields_in_the_visitors_language(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        officer = _officer_session(http, tenant)
        hold = _hold(http, officer)  # the whole tenant
        http.cookies.set("dv_console_lang", "nl", path="/console")
        refused = _post_disclosure(
            http, hold["id"], recipient="", legal_basis="", disclosure_categories=[],
            disclosed_at="2024-13-45", withhold_until="later",
            disclosure_subject_ref="x" * 201, description="about someone",
        )  # fmt: skip
        listed = http.get("/v1/disclosures", headers=auth(officer)).json()["items"]
    assert refused.status_code == 422
    for field in ("recipient", "legal_basis", "disclosure_categories", "disclosed_at",
                  "withhold_until", "disclosure_subject_ref"):  # fmt: skip
        assert f'id="{field}-error"' in refused.text, field
    assert "Noem de ontvanger in 1 tot 200 tekens." in refused.text
    assert "zoals 01-03-2025 14:30" in refused.text
    # What was typed is kept, so nothing needs typing twice.
    assert ">about someone</textarea>" in refused.text
    assert listed == []


def test_a_tenant_wide_hold_asks_which_subject(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        app = create_key(http, tenant, ["ingest"])
        assert put_record(http, app, "console-named", "profile", b"{}").status_code == 201
        officer = _officer_session(http, tenant)
        hold = _hold(http, officer, reason="regulatory")
        form_page = http.get(f"/console/holds/{hold['id']}")
        named = _post_disclosure(http, hold["id"], disclosure_subject_ref="console-named")
        nobody = _post_disclosure(http, hold["id"], description="")
        unknown = _post_disclosure(http, hold["id"], disclosure_subject_ref="console-never-seen")
        listed = http.get(
            "/v1/disclosures", params={"hold_id": hold["id"]}, headers=auth(officer)
        ).json()["items"]
    assert 'name="disclosure_subject_ref"' in form_page.text
    assert (named.status_code, nobody.status_code) == (303, 303)
    # A description is sealed under the subject's keys: a subject without any is refused.
    assert unknown.status_code == 422 and 'id="description-error"' in unknown.text
    assert sorted(d["subject_ref"] or "" for d in listed) == ["", "console-named"]


def test_the_subject_page_lists_its_disclosures_for_compliance_only(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        app = create_key(http, tenant, ["ingest"])
        assert put_record(http, app, "console-listed", "profile", b"{}").status_code == 201
        officer = _officer_session(http, tenant)
        hold = _hold(http, officer, subject_ref="console-listed")
        assert _post_disclosure(http, hold["id"], recipient="FIOD").status_code == 303
        token = form_token(http.get("/console/subjects").text)
        as_officer = http.post(
            "/console/subjects", data={"csrf_token": token, "ref": "console-listed"}
        )
    with server.client() as other:
        reader = create_key(other, tenant, ["erasure", "read"])
        assert sign_in(other, reader["secret"]).status_code == 303
        token = form_token(other.get("/console/subjects").text)
        as_reader = other.post(
            "/console/subjects", data={"csrf_token": token, "ref": "console-listed"}
        )
        post = other.post(
            f"/console/holds/{hold['id']}/disclosures", data={"csrf_token": token, **_form()}
        )
    assert 'id="subject-disclosures"' in as_officer.text
    assert "FIOD" in as_officer.text and f"/console/holds/{hold['id']}" in as_officer.text
    assert as_reader.status_code == 200
    assert 'id="subject-disclosures"' not in as_reader.text and "FIOD" not in as_reader.text
    assert post.status_code == 403


def test_another_tenants_hold_is_not_found_and_records_nothing(
    server: ServerThread, tenant: Tenant, new_tenant: Callable[[], Tenant]
) -> None:
    other = new_tenant()
    with server.client() as http:
        theirs = create_key(http, other, ["compliance"])
        their_hold = _hold(http, theirs)
        _officer_session(http, tenant)
        token = form_token(http.get("/console/holds").text)
        foreign = http.post(
            f"/console/holds/{their_hold['id']}/disclosures", data={"csrf_token": token, **_form()}
        )
        missing = http.post(
            f"/console/holds/{uuid.uuid4()}/disclosures", data={"csrf_token": token, **_form()}
        )
        no_token = http.post(f"/console/holds/{their_hold['id']}/disclosures", data=_form())
        theirs_listed = http.get("/v1/disclosures", headers=auth(theirs)).json()["items"]
    assert foreign.status_code == missing.status_code == 404
    assert foreign.headers["content-type"].startswith("text/html")
    assert no_token.status_code == 403
    assert theirs_listed == []


def test_recording_is_in_the_access_log_under_its_route(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        app = create_key(http, tenant, ["ingest"])
        assert put_record(http, app, "console-logged", "profile", b"{}").status_code == 201
        officer = _officer_session(http, tenant)
        hold = _hold(http, officer, subject_ref="console-logged")
        assert _post_disclosure(http, hold["id"]).status_code == 303
        rows = access_log(http, officer, subject_ref="console-logged")
    posted = [r for r in rows if r["route"] == "/console/holds/{hold_id}/disclosures"]
    assert [(r["method"], r["status"], r["api_key_id"]) for r in posted] == [
        ("POST", 303, officer["id"])
    ]


def test_a_holds_page_is_in_the_access_log_under_every_subject_it_listed(
    server: ServerThread, tenant: Tenant
) -> None:
    """The page of a tenant-wide hold shows the references and descriptions of every
    subject disclosed under it: its request is found under each of them."""
    refs = [f"console-page-{n}-{uuid.uuid4().hex[:6]}" for n in range(2)]
    with server.client() as http:
        app = create_key(http, tenant, ["ingest"])
        for ref in refs:
            assert put_record(http, app, ref, "profile", b"{}").status_code == 201
        officer = _officer_session(http, tenant)
        hold = _hold(http, officer, reason="regulatory")
        for ref in refs:
            posted = _post_disclosure(http, hold["id"], disclosure_subject_ref=ref)
            assert posted.status_code == 303
        page_id = f"hold-page-{uuid.uuid4().hex}"
        page = http.get(f"/console/holds/{hold['id']}", headers={"X-Request-Id": page_id})
        assert page.status_code == 200 and all(ref in page.text for ref in refs)
        found = [
            [r for r in access_log(http, officer, subject_ref=ref) if r["request_id"] == page_id]
            for ref in refs
        ]
    for rows in found:
        assert [(r["route"], r["status"], r["bytes_out"]) for r in rows] == [
            ("/console/holds/{hold_id}", 200, 0)
        ]
