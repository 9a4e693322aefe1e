"""What the typed models refuse over HTTP: each as problem+json 422 naming the field,
never repeating the value, never 500; and the same requests done right succeed."""

from __future__ import annotations

import httpx
import pytest

from tests.api.helpers import auth, create_key, subject_url, upload
from tests.support import ServerThread, Tenant, problem

PERSONAL = "Alice Example of 12 Cherry Lane"


def _refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    body = problem(response)
    assert body["errors"][0]["field"] == field
    assert PERSONAL not in response.text


def test_an_enum_field_with_other_text_is_422_without_the_text(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        officer = auth(create_key(http, tenant, ["compliance"]))
        hold = http.post(
            "/v1/holds", json={"reason": PERSONAL, "reference": "C-1"}, headers=officer
        )
        scope = http.post(
            "/v1/api-keys", json={"name": "k", "scopes": [PERSONAL]}, headers=tenant.auth()
        )
        listed = http.get("/v1/holds", params={"reason": PERSONAL}, headers=officer)
        placed = http.post("/v1/holds", json={"reason": "billing", "reference": "C-1"},
                           headers=officer)  # fmt: skip
    _refused(hold, "reason")
    assert "litigation" in problem(hold)["detail"]
    _refused(scope, "scopes")
    _refused(listed, "reason")
    assert placed.status_code == 201


@pytest.mark.parametrize("body", [{"reason": 5}, {"reference": ["x"]}, {"reason": "x" * 501}])
def test_an_erasure_body_of_the_wrong_shape_is_422(
    server: ServerThread, tenant: Tenant, body: dict[str, object]
) -> None:
    with server.client() as http:
        officer = auth(create_key(http, tenant, ["erasure"]))
        response = http.post(subject_url("typed-erasure", "erasure"), json=body, headers=officer)
    _refused(response, next(iter(body)))


def test_unknown_query_parameters_of_writes_are_422(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        put = http.put(
            subject_url("typed-q", "records", "profile"),
            params={"category": "account", "categroy": "billing"},
            json={"a": 1},
            headers=auth(app),
        )
        uploaded = upload(http, app, "typed-q", b"bytes", category="recording")
        sent = http.post(
            subject_url("typed-q", "artefacts"),
            params={"category": "recording", "colour": "red"},
            content=b"bytes",
            headers=auth(app),
        )
    _refused(put, "categroy")
    _refused(sent, "colour")
    assert uploaded.status_code == 201


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "2026-01-01T00:00:00"])
def test_a_time_without_an_offset_or_out_of_range_in_utc_is_422(
    server: ServerThread, tenant: Tenant, moment: str
) -> None:
    with server.client() as http:
        officer = auth(create_key(http, tenant, ["compliance"]))
        searched = http.get("/v1/access-log", params={"since": moment}, headers=officer)
        hold = http.post(
            "/v1/holds",
            json={"reason": "billing", "reference": "C-2", "expires_at": moment},
            headers=officer,
        )
    _refused(searched, "since")
    _refused(hold, "expires_at")


def test_a_restriction_answers_the_subject_with_its_categories(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        app = create_key(http, tenant, ["ingest"])
        officer = auth(create_key(http, tenant, ["compliance"]))
        assert upload(http, app, "typed-r", b"bytes", category="recording").status_code == 201
        restricted = http.post(
            subject_url("typed-r", "restriction"), json={"reason": "disputed"}, headers=officer
        )
        lifted = http.delete(subject_url("typed-r", "restriction"), headers=officer)
    assert restricted.status_code == 200, restricted.text
    assert restricted.json()["status"] == "restricted"
    assert restricted.json()["categories"]["recording"]["artefacts"] == 1
    assert lifted.json()["status"] == "active" and lifted.json()["restricted_at"] is None
