"""/v1/api-keys: creating, listing, revoking and using API keys (API.md "API keys",
"Scopes"; DESIGN.md "API keys")."""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.api.helpers import auth, create_key, from_ip, parse_time, rfc3339
from tests.support import ServerThread, Tenant, bearer, problem


def _walk_keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from _walk_keys(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _walk_keys(inner)


def _listed(http: Any, tenant: Tenant) -> dict[str, dict[str, Any]]:
    response = http.get("/v1/api-keys", headers=tenant.auth())
    assert response.status_code == 200, response.text
    return {item["id"]: item for item in response.json()["items"]}


# --- creating a generated key -------------------------------------------------------------


def test_created_key_has_prefixed_secret_and_echoes_its_scopes(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        response = http.post(
            "/v1/api-keys",
            json={"name": "auditor", "scopes": ["compliance", "read"], "owner": "a.auditor"},
            headers=tenant.auth(),
        )
    assert response.status_code == 201, response.text
    key = response.json()
    uuid.UUID(key["id"])
    assert key["name"] == "auditor"
    assert sorted(key["scopes"]) == ["compliance", "read"]
    assert re.fullmatch(r"[a-z2-7]{12}", key["prefix"]), key["prefix"]
    assert key["secret"].startswith(f"dv_{key['prefix']}_")
    # >= 256 bits of randomness: 43 base64url characters after the prefix.
    assert re.fullmatch(rf"dv_{key['prefix']}_[A-Za-z0-9_-]{{43,}}", key["secret"])


def test_generated_secrets_are_unique(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        first = create_key(http, tenant, ["read"])
        second = create_key(http, tenant, ["read"])
    assert first["secret"] != second["secret"]
    assert first["prefix"] != second["prefix"]
    assert first["id"] != second["id"]


def test_created_key_works_for_its_scope(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        key = create_key(http, tenant, ["compliance"])
        response = http.get("/v1/access-log", headers=auth(key))
    assert response.status_code == 200, response.text


def test_created_key_is_refused_outside_its_scope(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        key = create_key(http, tenant, ["compliance"])
        response = http.get("/v1/api-keys", headers=auth(key))
    assert response.status_code == 403
    problem(response)


def test_key_times_are_rfc3339_utc_ending_in_z(server: ServerThread, tenant: Tenant) -> None:
    expires = rfc3339(datetime.now(UTC) + timedelta(days=1))
    with server.client() as http:
        key = create_key(http, tenant, ["read"], expires_at=expires)
        http.get("/v1/tenant", headers=auth(key))  # sets last_used_at
        listed = _listed(http, tenant)[key["id"]]
    for value in (key["created_at"], key["expires_at"], listed["created_at"]):
        assert value.endswith("Z"), value
        parse_time(value)
    assert listed["last_used_at"] is not None
    assert listed["last_used_at"].endswith("Z"), listed["last_used_at"]


# --- listing ------------------------------------------------------------------------------


def test_key_list_never_shows_a_secret_or_hash(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        key = create_key(http, tenant, ["read"])
        response = http.get("/v1/api-keys", headers=tenant.auth())
    assert response.status_code == 200
    assert key["secret"] not in response.text
    assert tenant.admin_key not in response.text
    body = response.json()
    fields = {name.lower() for name in _walk_keys(body)}
    assert not [f for f in fields if "secret" in f or "hash" in f], sorted(fields)
    listed = {item["id"]: item for item in body["items"]}
    assert listed[key["id"]]["prefix"] == key["prefix"]
    assert listed[key["id"]]["name"] == key["name"]


def test_unused_key_is_listed_with_empty_last_use(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        key = create_key(http, tenant, ["read"])
        listed = _listed(http, tenant)[key["id"]]
    assert "last_used_at" in listed
    assert "last_used_ip" in listed
    assert listed["last_used_at"] is None
    assert listed["last_used_ip"] is None


def test_using_a_key_records_last_use_time_and_client_ip(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        key = create_key(http, tenant, ["compliance"])
        before = datetime.now(UTC) - timedelta(seconds=1)
        assert http.get("/v1/access-log", headers=auth(key, "198.51.100.21")).status_code == 200
        after = datetime.now(UTC) + timedelta(seconds=1)
        listed = _listed(http, tenant)[key["id"]]
    assert listed["last_used_ip"] == "198.51.100.21"
    assert listed["last_used_at"] is not None
    assert before <= parse_time(listed["last_used_at"]) <= after


# --- revoking -----------------------------------------------------------------------------


def test_revoked_key_is_refused_on_next_request(server: ServerThread, tenant: Tenant) -> None:
    ip = "198.51.100.22"
    with server.client() as http:
        key = create_key(http, tenant, ["compliance"])
        assert http.get("/v1/access-log", headers=auth(key, ip)).status_code == 200
        revoked = http.delete(f"/v1/api-keys/{key['id']}", headers=tenant.auth())
        assert revoked.status_code == 204
        assert revoked.content == b""
        refused = http.get("/v1/access-log", headers=auth(key, ip))
    assert refused.status_code == 401
    problem(refused)


def test_revoking_one_key_leaves_the_others_working(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        doomed = create_key(http, tenant, ["compliance"])
        survivor = create_key(http, tenant, ["compliance"])
        assert http.delete(f"/v1/api-keys/{doomed['id']}", headers=tenant.auth()).status_code == 204
        assert http.get("/v1/access-log", headers=auth(survivor)).status_code == 200
        assert http.get("/v1/api-keys", headers=tenant.auth()).status_code == 200


def test_revoking_an_unknown_key_id_is_404(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        response = http.delete(f"/v1/api-keys/{uuid.uuid4()}", headers=tenant.auth())
    assert response.status_code == 404
    problem(response)


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "1234", "%00", "..%2f..%2fetc"])
def test_revoking_a_malformed_key_id_is_404(
    server: ServerThread, tenant: Tenant, bad_id: str
) -> None:
    with server.client() as http:
        response = http.delete(f"/v1/api-keys/{bad_id}", headers=tenant.auth())
    assert response.status_code == 404
    problem(response)


def test_revoking_another_tenants_key_is_404_and_the_key_keeps_working(
    server: ServerThread, new_tenant: Callable[[], Tenant]
) -> None:
    owner, intruder = new_tenant(), new_tenant()
    with server.client() as http:
        key = create_key(http, owner, ["compliance"])
        attempt = http.delete(f"/v1/api-keys/{key['id']}", headers=intruder.auth())
        still_works = http.get("/v1/access-log", headers=auth(key))
        unknown = http.delete(f"/v1/api-keys/{uuid.uuid4()}", headers=intruder.auth())
    assert attempt.status_code == 404
    # Same answer as for an id that does not exist, so ids cannot be probed.
    assert problem(attempt)["type"] == problem(unknown)["type"]
    assert problem(attempt)["detail"] == problem(unknown)["detail"]
    assert still_works.status_code == 200


def test_another_tenants_keys_are_not_listed(
    server: ServerThread, new_tenant: Callable[[], Tenant]
) -> None:
    owner, other = new_tenant(), new_tenant()
    with server.client() as http:
        key = create_key(http, owner, ["read"])
        assert key["id"] in _listed(http, owner)
        assert key["id"] not in _listed(http, other)


# --- bring your own secret ----------------------------------------------------------------


def test_own_random_secret_is_accepted_and_usable(server: ServerThread, tenant: Tenant) -> None:
    own = secrets.token_urlsafe(32)
    assert len(own) == 43
    with server.client() as http:
        response = http.post(
            "/v1/api-keys",
            json={"name": "byo", "scopes": ["compliance"], "secret": own, "owner": "b.byo"},
            headers=tenant.auth(),
        )
        assert response.status_code == 201, response.text
        key = response.json()
        assert key["secret"] == own
        assert key["prefix"]
        used = http.get("/v1/access-log", headers=bearer(own))
        listed = http.get("/v1/api-keys", headers=tenant.auth())
    assert used.status_code == 200
    assert own not in listed.text


@pytest.mark.parametrize(
    "own",
    [
        pytest.param(secrets.token_urlsafe(32)[:31], id="31-random-chars"),
        pytest.param("a" * 40, id="one-repeated-char"),
        pytest.param("abcdefgh" * 5, id="repeated-sequence"),
        pytest.param("0123456789" * 4, id="ascending-digits"),
        pytest.param(secrets.token_urlsafe(32)[:20] + " " + secrets.token_urlsafe(16), id="space"),
        pytest.param("qwertyuiopasdfghjklzxcvbnm123456", id="keyboard-walk"),
        pytest.param("correcthorsebatterystaplewindowgarden", id="xkcd-passphrase"),
    ],
)
def test_short_or_guessable_own_secret_is_refused_without_echoing_it(
    server: ServerThread, tenant: Tenant, own: str, request: pytest.FixtureRequest
) -> None:
    with server.client() as http:
        response = http.post(
            "/v1/api-keys",
            json={"name": "byo", "scopes": ["read"], "secret": own},
            headers=tenant.auth(),
        )
        # One /64 per case: the failed-auth throttle counts an IPv6 client by its /64.
        ip = f"2001:db8:23:{request.node.callspec.indices['own'] + 1:x}::1"
        used = http.get("/v1/tenant", headers={**bearer(own), **from_ip(ip)})
    assert response.status_code == 422, response.text
    problem(response)
    assert own not in response.text
    assert own not in json.dumps(dict(response.headers))
    assert used.status_code == 401  # nothing was created


# --- invalid requests ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"name": "x", "scopes": ["superuser"]}, id="unknown-scope"),
        pytest.param({"scopes": ["read"]}, id="missing-name"),
        pytest.param({"name": "", "scopes": ["read"]}, id="empty-name"),
        pytest.param({"name": "x" * 201, "scopes": ["read"]}, id="name-too-long"),
        pytest.param({"name": 7, "scopes": ["read"]}, id="name-not-a-string"),
        pytest.param({"name": "a\u0000b", "scopes": ["read"]}, id="name-with-nul"),
        pytest.param({"name": "x", "scopes": []}, id="no-scopes"),
        pytest.param({"name": "x"}, id="missing-scopes"),
        pytest.param({"name": "x", "scopes": "read"}, id="scopes-not-a-list"),
        pytest.param({"name": "x", "scopes": ["read"], "colour": "red"}, id="unknown-field"),
        pytest.param(
            {"name": "x", "scopes": ["read"], "expires_at": "2001-01-01T00:00:00Z"},
            id="expires-in-the-past",
        ),
        pytest.param(
            {"name": "x", "scopes": ["read"], "expires_at": "tomorrow"}, id="expires-not-a-time"
        ),
        pytest.param(
            {"name": "x", "scopes": ["read"], "expires_at": "2999-01-01T00:00:00"},
            id="expires-without-zone",
        ),
        pytest.param(
            {"name": "x", "scopes": ["read"], "expires_at": "9999-12-31T23:59:59-01:00"},
            id="expires-beyond-representable",
        ),
        pytest.param(
            {"name": "x", "scopes": ["read"], "allowed_cidrs": ["10.0.0.0/33"]}, id="bad-cidr"
        ),
        pytest.param(
            {"name": "x", "scopes": ["read"], "allowed_cidrs": "10.0.0.0/8"},
            id="cidrs-not-a-list",
        ),
        pytest.param({"name": "x", "scopes": ["read"], "secret": 12345}, id="secret-not-a-string"),
    ],
)
def test_invalid_key_request_is_422_and_creates_nothing(
    server: ServerThread, tenant: Tenant, body: dict[str, Any]
) -> None:
    with server.client() as http:
        before = _listed(http, tenant)
        response = http.post("/v1/api-keys", json=body, headers=tenant.auth())
        after = _listed(http, tenant)
    assert response.status_code == 422, response.text
    assert problem(response)["detail"]
    assert after.keys() == before.keys()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "scopes": ["superuser"]}, "scopes"),
        ({"scopes": ["read"]}, "name"),
        ({"name": "x", "scopes": ["read"], "secret": "a" * 40}, "secret"),
        ({"name": "x", "scopes": ["read"], "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ],
)
def test_validation_error_lists_the_offending_field(
    server: ServerThread, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    # API.md, Conventions: "Validation errors add errors: [{field, message}]".
    with server.client() as http:
        response = http.post("/v1/api-keys", json=body, headers=tenant.auth())
    assert response.status_code == 422
    errors = problem(response).get("errors")
    assert isinstance(errors, list), response.text
    assert field in [e.get("field") for e in errors], errors
    assert all(isinstance(e.get("message"), str) and e["message"] for e in errors)


def test_valid_key_request_with_every_field_is_201(server: ServerThread, tenant: Tenant) -> None:
    """The positive twin of the 422 cases above."""
    expires = rfc3339(datetime.now(UTC) + timedelta(days=30))
    body = {
        "name": "everything",
        "scopes": ["ingest", "read"],
        "allowed_cidrs": ["10.0.0.0/8", "2001:db8::/32"],
        "expires_at": expires,
        "secret": secrets.token_urlsafe(32),
    }
    with server.client() as http:
        response = http.post("/v1/api-keys", json=body, headers=tenant.auth())
    assert response.status_code == 201, response.text
    key = response.json()
    assert sorted(key["allowed_cidrs"]) == ["10.0.0.0/8", "2001:db8::/32"]
    assert parse_time(key["expires_at"]) == parse_time(expires)


def test_non_json_content_type_is_415(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        response = http.post(
            "/v1/api-keys",
            content=json.dumps({"name": "x", "scopes": ["read"]}),
            headers={**tenant.auth(), "Content-Type": "text/plain"},
        )
    assert response.status_code == 415
    problem(response)


def test_json_content_type_with_charset_is_accepted(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        response = http.post(
            "/v1/api-keys",
            content=json.dumps({"name": "x", "scopes": ["read"]}),
            headers={**tenant.auth(), "Content-Type": "application/json; charset=utf-8"},
        )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"name": "x", "scopes": ["read"]', id="truncated"),
        pytest.param(b"\xff\xfe not utf-8", id="not-utf8"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[" * 30_000 + b"]" * 30_000, id="deeply-nested"),
    ],
)
def test_malformed_json_body_is_400(server: ServerThread, tenant: Tenant, raw: bytes) -> None:
    with server.client() as http:
        response = http.post(
            "/v1/api-keys",
            content=raw,
            headers={**tenant.auth(), "Content-Type": "application/json"},
        )
    assert response.status_code in (400, 413, 422), response.text  # never a 500
    problem(response)
    if len(raw) < 1000:
        assert response.status_code == 400


def test_json_that_is_not_an_object_is_422(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        response = http.post("/v1/api-keys", json=["read"], headers=tenant.auth())
    assert response.status_code == 422
    problem(response)


def test_body_over_64_kib_is_413(server: ServerThread, tenant: Tenant) -> None:
    body = json.dumps({"name": "x" * (64 * 1024), "scopes": ["read"]}).encode()
    with server.client() as http:
        response = http.post(
            "/v1/api-keys",
            content=body,
            headers={**tenant.auth(), "Content-Type": "application/json"},
        )
    assert response.status_code == 413
    problem(response)


def test_chunked_body_over_64_kib_is_413(server: ServerThread, tenant: Tenant) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'", "scopes": ["read"]}'

    with server.client() as http:
        response = http.post(
            "/v1/api-keys",
            content=chunks(),
            headers={**tenant.auth(), "Content-Type": "application/json"},
        )
    assert response.status_code == 413
    problem(response)


def test_body_just_under_64_kib_is_read(server: ServerThread, tenant: Tenant) -> None:
    # Close to the limit but under it: parsed (then refused for the long name, 422, not 413).
    body = json.dumps({"name": "x" * (60 * 1024), "scopes": ["read"]}).encode()
    assert len(body) < 64 * 1024
    with server.client() as http:
        response = http.post(
            "/v1/api-keys",
            content=body,
            headers={**tenant.auth(), "Content-Type": "application/json"},
        )
    assert response.status_code == 422
    problem(response)


# --- expiry -------------------------------------------------------------------------------


def test_key_works_until_it_expires_then_is_401(server: ServerThread, tenant: Tenant) -> None:
    ip = "198.51.100.24"
    expires = datetime.now(UTC) + timedelta(seconds=2)
    with server.client() as http:
        key = create_key(http, tenant, ["compliance"], expires_at=rfc3339(expires))
        assert http.get("/v1/access-log", headers=auth(key, ip)).status_code == 200
        time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.2)
        refused = http.get("/v1/access-log", headers=auth(key, ip))
    assert refused.status_code == 401
    problem(refused)


# --- allowed CIDRs ------------------------------------------------------------------------


def test_key_with_allowed_cidrs_works_from_inside_them(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        key = create_key(http, tenant, ["compliance"], allowed_cidrs=["203.0.113.0/24"])
        response = http.get("/v1/access-log", headers=auth(key, "203.0.113.9"))
    assert response.status_code == 200, response.text


def test_key_with_allowed_cidrs_is_403_from_outside_them(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        key = create_key(http, tenant, ["compliance"], allowed_cidrs=["203.0.113.0/24"])
        response = http.get("/v1/access-log", headers=auth(key, "198.51.100.9"))
        ipv6 = http.get("/v1/access-log", headers=auth(key, "2001:db8::9"))
    assert response.status_code == 403
    problem(response)
    assert ipv6.status_code == 403


def test_key_with_ipv6_allowed_cidr(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        key = create_key(http, tenant, ["compliance"], allowed_cidrs=["2001:db8:77::/48"])
        inside = http.get("/v1/access-log", headers=auth(key, "2001:db8:77::1"))
        outside = http.get("/v1/access-log", headers=auth(key, "2001:db8:78::1"))
    assert inside.status_code == 200
    assert outside.status_code == 403


# --- scopes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "path", "status"),
    [
        (["ingest"], "/v1/api-keys", 403),
        (["read", "ingest", "erasure", "compliance"], "/v1/api-keys", 403),
        (["admin"], "/v1/api-keys", 200),
        (["compliance"], "/v1/access-log", 200),
        (["read"], "/v1/access-log", 403),
        (["admin"], "/v1/access-log", 403),
        (["read", "compliance"], "/v1/access-log", 200),
        (["compliance"], "/v1/tenant", 403),
        (["admin"], "/v1/tenant", 200),
    ],
)
def test_scopes_are_enforced(
    server: ServerThread, tenant: Tenant, scopes: list[str], path: str, status: int
) -> None:
    with server.client() as http:
        key = create_key(http, tenant, scopes)
        response = http.get(path, headers=auth(key))
    assert response.status_code == status, response.text
    if status == 403:
        problem(response)


def test_key_without_admin_scope_cannot_create_keys(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        key = create_key(http, tenant, ["compliance"])
        response = http.post(
            "/v1/api-keys", json={"name": "escalate", "scopes": ["admin"]}, headers=auth(key)
        )
    assert response.status_code == 403
    problem(response)


def test_missing_authorization_is_401_with_www_authenticate(server: ServerThread) -> None:
    with server.client() as http:
        response = http.get("/v1/api-keys", headers=from_ip("198.51.100.25"))
    assert response.status_code == 401
    problem(response)
    assert response.headers["WWW-Authenticate"].lower().startswith("bearer")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer dv_aaaaaaaaaaaa_" + "A" * 43,
        "Bearer " + "x" * 5000,
        "Basic dXNlcjpwYXNz",
        "Bearer",
    ],
)
def test_wrong_key_is_401_with_www_authenticate(
    server: ServerThread, header: str, request: pytest.FixtureRequest
) -> None:
    # One /64 per case: the failed-auth throttle counts an IPv6 client by its /64.
    ip = f"2001:db8:26:{request.node.callspec.indices['header'] + 1:x}::1"
    with server.client() as http:
        response = http.get("/v1/api-keys", headers={"Authorization": header, **from_ip(ip)})
    assert response.status_code == 401
    problem(response)
    assert response.headers["WWW-Authenticate"].lower().startswith("bearer")
