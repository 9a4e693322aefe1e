"""Disclosures over HTTP (API.md "Disclosures"): recording and reading them, the hold that
names the subject, two tenants and wrong-scope keys, every limit at its edge, the access
log, idempotency, what an erasure leaves of an entry, and the subject's export."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.api.helpers import (
    access_log,
    auth,
    create_key,
    put_record,
    rfc3339,
    subject_url,
)
from tests.jobs import run_worker_pass
from tests.support import ServerThread, Tenant, make_tenant, problem
from vault.domain.disclosures import (
    MAX_DESCRIPTION_LENGTH,
    MAX_LEGAL_BASIS_LENGTH,
    MAX_RECIPIENT_LENGTH,
    MAX_REFERENCE_LENGTH,
)

NOW = datetime.now(UTC)


def _keys(http: httpx.Client, tenant: Tenant) -> dict[str, dict[str, Any]]:
    return {
        "app": create_key(http, tenant, ["ingest", "read"]),
        "officer": create_key(http, tenant, ["compliance"]),
        "privacy": create_key(http, tenant, ["erasure"]),
    }


def _body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "recipient": "Politie Eenheid Amsterdam",
        "legal_basis": "Art. 126nd Sv (vordering)",
        "reference": "PV-2024-118",
        "categories": ["recording"],
        "disclosed_at": rfc3339(NOW - timedelta(days=1)),
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def _record(http: httpx.Client, key: dict[str, Any], **fields: Any) -> httpx.Response:
    return http.post("/v1/disclosures", json=_body(**fields), headers=auth(key))


def _stored(http: httpx.Client, key: dict[str, Any], ref: str) -> None:
    written = put_record(http, key, ref, "profile", b'{"plan": "basic"}')
    assert written.status_code == 201, written.text


def test_a_disclosure_is_recorded_read_and_listed(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        _stored(http, keys["app"], "dis-ann")
        created = _record(
            http, keys["officer"], subject_ref="dis-ann", description="calls of 1-7 May",
            categories=["recording", "account"],
            withhold_from_subject_until=rfc3339(NOW + timedelta(days=90)),
        )  # fmt: skip
        assert created.status_code == 201, created.text
        shown = http.get(created.headers["location"], headers=auth(keys["officer"]))
        listed = http.get(
            "/v1/disclosures", params={"subject_ref": "dis-ann"}, headers=auth(keys["officer"])
        )
    body = created.json()
    assert created.headers["location"] == f"/v1/disclosures/{body['id']}"
    assert body["subject_ref"] == "dis-ann"
    assert len(body["subject_ref_hash"]) == 64
    assert body["recipient"] == "Politie Eenheid Amsterdam"
    assert body["categories"] == ["recording", "account"]
    assert body["description"] == "calls of 1-7 May"
    assert body["description_erased"] is False
    assert body["hold_id"] is None
    assert body["recorded_by"] == keys["officer"]["id"]
    assert body["disclosed_at"].endswith("Z") and body["recorded_at"].endswith("Z")
    assert shown.json() == body
    assert listed.json() == {"items": [body], "next_cursor": None}


def test_the_hold_that_asked_for_it_names_the_subject(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        _stored(http, keys["app"], "dis-held")
        hold = http.post(
            "/v1/holds",
            json={"subject_ref": "dis-held", "reason": "law_enforcement", "reference": "PV-9"},
            headers=auth(keys["officer"]),
        ).json()
        other = http.post(
            "/v1/holds", json={"subject_ref": "dis-other", "reason": "billing", "reference": "B"},
            headers=auth(keys["officer"]),
        ).json()  # fmt: skip
        by_hold = _record(http, keys["officer"], hold_id=hold["id"], description="two calls")
        mismatched = _record(http, keys["officer"], hold_id=other["id"], subject_ref="dis-held")
        listed = http.get(
            "/v1/disclosures", params={"hold_id": hold["id"]}, headers=auth(keys["officer"])
        ).json()["items"]
    assert by_hold.status_code == 201, by_hold.text
    assert by_hold.json()["hold_id"] == hold["id"]
    assert by_hold.json()["subject_ref_hash"] == hold["subject_ref_hash"]
    assert by_hold.json()["subject_ref"] == "dis-held"
    assert by_hold.json()["description"] == "two calls"
    assert problem(mismatched)["status"] == 422
    assert [e["field"] for e in mismatched.json()["errors"]] == ["subject_ref"]
    assert [d["id"] for d in listed] == [by_hold.json()["id"]]


def test_a_tenant_wide_hold_leaves_the_subject_to_the_disclosure(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        hold = http.post(
            "/v1/holds", json={"reason": "regulatory", "reference": "AP-2024-3"},
            headers=auth(keys["officer"]),
        ).json()  # fmt: skip
        tenant_wide = _record(http, keys["officer"], hold_id=hold["id"], categories=["billing"])
    assert tenant_wide.status_code == 201, tenant_wide.text
    assert tenant_wide.json()["subject_ref_hash"] is None
    assert tenant_wide.json()["subject_ref"] is None


def test_only_the_compliance_scope_reads_or_records(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        admin = create_key(http, tenant, ["admin"])
        created = _record(http, keys["officer"]).json()
        for key in (keys["app"], keys["privacy"], admin):
            for answered in (
                _record(http, key),
                http.get("/v1/disclosures", headers=auth(key)),
                http.get(f"/v1/disclosures/{created['id']}", headers=auth(key)),
            ):
                assert problem(answered)["status"] == 403, answered.request.url
                assert answered.json()["type"].endswith("/forbidden")
        nobody = http.get("/v1/disclosures", headers={"Authorization": "Bearer dv_x_" + "y" * 43})
    assert problem(nobody)["status"] == 401


def test_another_tenants_disclosures_and_holds_do_not_exist(
    server: ServerThread, tenant: Tenant, new_tenant: Any
) -> None:
    other: Tenant = new_tenant()
    with server.client() as http:
        ours = _keys(http, tenant)
        theirs = _keys(http, other)
        _stored(http, ours["app"], "dis-shared-ref")
        _stored(http, theirs["app"], "dis-shared-ref")
        their_hold = http.post(
            "/v1/holds", json={"reason": "billing", "reference": "THEIRS"},
            headers=auth(theirs["officer"]),
        ).json()  # fmt: skip
        mine = _record(http, ours["officer"], subject_ref="dis-shared-ref").json()
        read = http.get(f"/v1/disclosures/{mine['id']}", headers=auth(theirs["officer"]))
        unknown = http.get(f"/v1/disclosures/{uuid.uuid4()}", headers=auth(theirs["officer"]))
        listed = http.get(
            "/v1/disclosures", params={"subject_ref": "dis-shared-ref"},
            headers=auth(theirs["officer"]),
        ).json()  # fmt: skip
        foreign_hold = _record(http, ours["officer"], hold_id=their_hold["id"])
        missing_hold = _record(http, ours["officer"], hold_id=str(uuid.uuid4()))
    assert problem(read)["status"] == 404
    assert read.json()["detail"] == unknown.json()["detail"]
    assert listed["items"] == []
    for refused in (foreign_hold, missing_hold):
        assert problem(refused)["status"] == 422
        assert refused.json()["errors"] == [{"field": "hold_id", "message": "no such hold"}]


def _fields(response: httpx.Response) -> set[str]:
    assert problem(response)["status"] == 422, response.text
    return {e["field"] for e in response.json()["errors"]}


def test_every_wrong_field_is_named_at_once(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        officer = _keys(http, tenant)["officer"]
        empty = http.post("/v1/disclosures", json={}, headers=auth(officer))
        wrong = http.post(
            "/v1/disclosures",
            json={"recipient": 7, "legal_basis": " ", "reference": ["x"], "categories": [],
                  "disclosed_at": "yesterday", "hold_id": "not-a-uuid", "subject_ref": ""},
            headers=auth(officer),
        )  # fmt: skip
        unknown = _record(http, officer, colour="red")
        not_json = http.post(
            "/v1/disclosures", content=b"recipient=x", headers={**auth(officer),
                                                               "Content-Type": "text/plain"},
        )  # fmt: skip
        broken = http.post(
            "/v1/disclosures", content=b"{", headers={**auth(officer),
                                                     "Content-Type": "application/json"},
        )  # fmt: skip
    assert _fields(empty) == {"recipient", "legal_basis", "reference", "categories",
                              "disclosed_at"}  # fmt: skip
    assert _fields(wrong) == {"recipient", "legal_basis", "reference", "categories",
                              "disclosed_at", "hold_id", "subject_ref"}  # fmt: skip
    assert _fields(unknown) == {"colour"}
    assert problem(not_json)["status"] == 415
    assert problem(broken)["status"] == 400


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("recipient", MAX_RECIPIENT_LENGTH),
        ("legal_basis", MAX_LEGAL_BASIS_LENGTH),
        ("reference", MAX_REFERENCE_LENGTH),
    ],
)
def test_text_limits_hold_at_their_edge(
    server: ServerThread, tenant: Tenant, field: str, limit: int
) -> None:
    with server.client() as http:
        officer = _keys(http, tenant)["officer"]
        at_limit = _record(http, officer, **{field: "x" * limit})
        over = _record(http, officer, **{field: "x" * (limit + 1)})
    assert at_limit.status_code == 201, at_limit.text
    assert _fields(over) == {field}


def test_description_limit_and_the_text_rule(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        _stored(http, keys["app"], "dis-long")
        officer = keys["officer"]
        at_limit = _record(
            http, officer, subject_ref="dis-long", description="d" * MAX_DESCRIPTION_LENGTH
        )
        over = _record(
            http, officer, subject_ref="dis-long", description="d" * (MAX_DESCRIPTION_LENGTH + 1)
        )
        nul = _record(http, officer, recipient="Police\x00")
        surrogate = http.post(
            "/v1/disclosures",
            content=json.dumps(_body(legal_basis="x")).replace('"x"', '"\\ud800"').encode(),
            headers={**auth(officer), "Content-Type": "application/json"},
        )
    assert at_limit.status_code == 201, at_limit.text
    assert _fields(over) == {"description"}
    assert _fields(nul) == {"recipient"}
    assert _fields(surrogate) == {"legal_basis"}


def test_times_categories_and_the_subject_are_checked(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        officer = keys["officer"]
        future = _record(http, officer, disclosed_at=rfc3339(NOW + timedelta(hours=1)))
        skewed = _record(
            http, officer, disclosed_at=rfc3339(datetime.now(UTC) + timedelta(minutes=1))
        )
        no_zone = _record(http, officer, disclosed_at="2024-05-01T10:00:00")
        withheld_before = _record(
            http, officer, disclosed_at=rfc3339(NOW - timedelta(days=2)),
            withhold_from_subject_until=rfc3339(NOW - timedelta(days=3)),
        )  # fmt: skip
        unknown_category = _record(http, officer, categories=["recording", "dreams"])
        identity = _record(http, officer, categories=["identity"])
        never_seen = _record(http, officer, subject_ref="dis-never-seen", description="x")
        never_seen_plain = _record(http, officer, subject_ref="dis-never-seen")
    assert _fields(future) == {"disclosed_at"}
    assert skewed.status_code == 201, skewed.text  # the recording clock may run a little fast
    assert _fields(no_zone) == {"disclosed_at"}
    assert _fields(withheld_before) == {"withhold_from_subject_until"}
    assert _fields(unknown_category) == {"categories"}
    assert identity.status_code == 201, identity.text
    # No keys to seal a description under: refused, not stored in the clear.
    assert _fields(never_seen) == {"description"}
    assert never_seen_plain.status_code == 201
    assert never_seen_plain.json()["subject_ref"] is None  # the vault never stored it


def test_lists_page_newest_disclosed_first_and_filter_by_time(
    server: ServerThread, tenant: Tenant
) -> None:
    days = [NOW - timedelta(days=d) for d in (30, 20, 10)]
    with server.client() as http:
        officer = _keys(http, tenant)["officer"]
        made = [_record(http, officer, disclosed_at=rfc3339(d)).json()["id"] for d in days]
        first = http.get("/v1/disclosures", params={"limit": 2}, headers=auth(officer)).json()
        second = http.get(
            "/v1/disclosures", params={"limit": 2, "cursor": first["next_cursor"]},
            headers=auth(officer),
        ).json()  # fmt: skip
        window = http.get(
            "/v1/disclosures", params={"since": rfc3339(days[0]), "until": rfc3339(days[2])},
            headers=auth(officer),
        ).json()  # fmt: skip
        too_many = http.get("/v1/disclosures", params={"limit": 501}, headers=auth(officer))
        odd = http.get("/v1/disclosures", params={"colour": "red"}, headers=auth(officer))
    assert [d["id"] for d in first["items"]] == [made[2], made[1]]
    assert [d["id"] for d in second["items"]] == [made[0]]
    assert second["next_cursor"] is None
    # since inclusive, until exclusive
    assert [d["id"] for d in window["items"]] == [made[1], made[0]]
    assert _fields(too_many) == {"limit"}
    assert _fields(odd) == {"colour"}


def test_recording_is_in_the_access_log_with_the_subjects_pseudonym(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        _stored(http, keys["app"], "dis-logged")
        created = http.post(
            "/v1/disclosures", json=_body(subject_ref="dis-logged"),
            headers={**auth(keys["officer"]), "X-Request-Id": "disclosure-request-1"},
        )  # fmt: skip
        rows = access_log(http, keys["officer"], subject_ref="dis-logged")
    assert created.status_code == 201, created.text
    row = next(r for r in rows if r["route"] == "/v1/disclosures")
    assert (row["method"], row["status"]) == ("POST", 201)
    assert row["request_id"] == "disclosure-request-1"
    assert row["api_key_id"] == keys["officer"]["id"]
    assert row["subject_ref_hash"] == created.json()["subject_ref_hash"]


def test_a_repeated_idempotency_key_records_once(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        officer = _keys(http, tenant)["officer"]
        headers = {**auth(officer), "Idempotency-Key": "disclosure-once"}
        body = _body(reference="IDEMPOTENT-1")
        first = http.post("/v1/disclosures", json=body, headers=headers)
        again = http.post("/v1/disclosures", json=body, headers=headers)
        other = http.post("/v1/disclosures", json=_body(reference="IDEMPOTENT-2"), headers=headers)
        listed = http.get("/v1/disclosures", headers=auth(officer)).json()["items"]
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert problem(other)["status"] == 422
    assert [d["reference"] for d in listed].count("IDEMPOTENT-1") == 1


def _export_manifest(http: httpx.Client, key: dict[str, Any], ref: str) -> dict[str, Any]:
    exported = http.get(subject_url(ref, "export"), headers=auth(key))
    assert exported.status_code == 200, exported.text
    with zipfile.ZipFile(io.BytesIO(exported.content)) as archive:
        manifest: dict[str, Any] = json.loads(archive.read("manifest.json"))
    return manifest


def test_the_export_lists_a_disclosure_once_it_is_no_longer_withheld(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        keys = _keys(http, tenant)
        _stored(http, keys["app"], "dis-export")
        told = _record(
            http, keys["officer"], subject_ref="dis-export", recipient="Belastingdienst",
            description="invoices 2023", categories=["billing"],
            withhold_from_subject_until=rfc3339(NOW - timedelta(hours=1)),
        ).json()  # fmt: skip
        plain = _record(http, keys["officer"], subject_ref="dis-export", recipient="Rechtbank")
        secret = _record(
            http, keys["officer"], subject_ref="dis-export", recipient="FIOD",
            withhold_from_subject_until=rfc3339(NOW + timedelta(days=180)),
        )  # fmt: skip
        other_subject = _record(http, keys["officer"], subject_ref="dis-elsewhere")
        manifest = _export_manifest(http, keys["app"], "dis-export")
    assert secret.status_code == other_subject.status_code == 201
    shown = {d["recipient"]: d for d in manifest["disclosures"]}
    assert set(shown) == {"Belastingdienst", "Rechtbank"}
    assert shown["Belastingdienst"] == {
        "id": told["id"],
        "recipient": "Belastingdienst",
        "legal_basis": told["legal_basis"],
        "categories": ["billing"],
        "description": "invoices 2023",
        "disclosed_at": told["disclosed_at"],
    }
    assert shown["Rechtbank"]["id"] == plain.json()["id"]


def test_an_erasure_leaves_the_entry_with_only_the_pseudonym(
    quiet_vault: ServerThread,
) -> None:
    vault = quiet_vault
    tenant = make_tenant(vault.settings, vault.database_url)
    with vault.client() as http:
        keys = _keys(http, tenant)
        _stored(http, keys["app"], "dis-erased")
        created = _record(
            http, keys["officer"], subject_ref="dis-erased", description="the call of 3 May"
        ).json()
        erasure = http.post(subject_url("dis-erased", "erasure"), headers=auth(keys["privacy"]))
        assert erasure.status_code == 202, erasure.text
        run_worker_pass(vault)
        status = http.get(f"/v1/erasures/{erasure.json()['id']}", headers=auth(keys["privacy"]))
        after = http.get(f"/v1/disclosures/{created['id']}", headers=auth(keys["officer"]))
        by_ref = http.get(
            "/v1/disclosures", params={"subject_ref": "dis-erased"},
            headers=auth(keys["officer"]),
        ).json()["items"]  # fmt: skip
        late = _record(http, keys["officer"], subject_ref="dis-erased", description="more")
    assert status.json()["status"] == "completed", status.text
    entry = after.json()
    assert entry["subject_ref"] is None
    assert entry["subject_ref_hash"] == created["subject_ref_hash"]
    assert entry["description"] is None and entry["description_erased"] is True
    unchanged = ("recipient", "legal_basis", "reference", "categories", "disclosed_at", "seq")
    assert {k: entry[k] for k in unchanged} == {k: created[k] for k in unchanged}
    # Still found by the reference its pseudonym is the hash of.
    assert [d["id"] for d in by_ref] == [created["id"]]
    # Nothing left to seal a new description under.
    assert _fields(late) == {"description"}
