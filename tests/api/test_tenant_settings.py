"""PATCH /v1/tenant/settings: the tenant's own categories and artefact size limits."""

from __future__ import annotations

import os
from collections.abc import Iterator

from tests.api.helpers import create_key
from tests.support import ServerThread, Tenant, bearer, problem


def _patch(server: ServerThread, tenant: Tenant, body: object) -> object:
    with server.client() as http:
        return http.patch("/v1/tenant/settings", json=body, headers=tenant.auth())


def test_own_category_can_be_added_and_used(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        refused = http.put(
            "/v1/subjects/u1/records/note?category=medical-notes",
            json={"x": 1},
            headers=bearer(create_key(http, tenant, ["ingest"])["secret"]),
        )
        changed = http.patch(
            "/v1/tenant/settings", json={"categories": ["medical-notes"]}, headers=tenant.auth()
        )
        ingest = bearer(create_key(http, tenant, ["ingest"])["secret"])
        stored = http.put(
            "/v1/subjects/u1/records/note?category=medical-notes", json={"x": 1}, headers=ingest
        )
        shown = http.get("/v1/tenant", headers=tenant.auth())
    assert refused.status_code == 422
    assert changed.status_code == 200, changed.text
    assert changed.json()["categories"] == ["medical-notes"]
    assert stored.status_code == 201, stored.text
    assert shown.json()["settings"]["categories"] == ["medical-notes"]


def test_per_category_artefact_limit_is_enforced_at_its_edge(
    server: ServerThread, tenant: Tenant
) -> None:
    limit = 64 * 1024
    with server.client() as http:
        changed = http.patch(
            "/v1/tenant/settings",
            json={"max_artefact_bytes": {"transcript": limit}},
            headers=tenant.auth(),
        )
        ingest = bearer(create_key(http, tenant, ["ingest"])["secret"])
        url = "/v1/subjects/u2/artefacts?category="
        exact = http.post(url + "transcript", content=os.urandom(limit), headers=ingest)
        over = http.post(url + "transcript", content=os.urandom(limit + 1), headers=ingest)

        def chunked() -> Iterator[bytes]:
            yield os.urandom(limit)
            yield b"x"

        over_chunked = http.post(url + "transcript", content=chunked(), headers=ingest)
        other = http.post(url + "recording", content=os.urandom(limit + 1), headers=ingest)
        listed = http.get(
            "/v1/subjects/u2/artefacts?category=transcript",
            headers=bearer(create_key(http, tenant, ["read"])["secret"]),
        )
    assert changed.status_code == 200 and changed.json()["max_artefact_bytes"] == {
        "transcript": limit
    }
    assert exact.status_code == 201, exact.text
    assert problem(over)["status"] == 413
    assert problem(over_chunked)["status"] == 413
    assert other.status_code == 201
    assert [a["size"] for a in listed.json()["items"]] == [limit]


def test_bad_settings_are_422_naming_the_field(server: ServerThread, tenant: Tenant) -> None:
    cases = {
        "categories": {"categories": ["Not A Slug"]},
        "max_artefact_bytes": {"max_artefact_bytes": {"nonexistent": 10}},
        "retention": {"retention": {"recording": {"delete_after_days": 0}}},
        "erasure_grace_hours": {"erasure_grace_hours": 29 * 24 + 1},
        "erasure_rate_limit_per_hour": {"erasure_rate_limit_per_hour": 0},
        "colour": {"colour": "blue"},
    }
    for field, body in cases.items():
        response = _patch(server, tenant, body)
        assert response.status_code == 422, (field, response.text)  # type: ignore[attr-defined]
        assert field in [e["field"] for e in problem(response)["errors"]]  # type: ignore[arg-type]


def test_built_in_category_cannot_be_redeclared(server: ServerThread, tenant: Tenant) -> None:
    response = _patch(server, tenant, {"categories": ["billing"]})
    assert response.status_code == 422  # type: ignore[attr-defined]


def test_only_admin_changes_settings(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        compliance = bearer(create_key(http, tenant, ["compliance", "ingest", "read"])["secret"])
        response = http.patch("/v1/tenant/settings", json={"categories": []}, headers=compliance)
    assert response.status_code == 403
