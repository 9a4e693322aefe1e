"""/v1/access-log: every request is logged, searchable by the compliance scope of its own
tenant only (API.md "Access log"; DESIGN.md "Access log", "Tenant isolation")."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from tests.api.helpers import access_log, auth, create_key, from_ip, parse_time
from tests.support import ServerThread, Tenant, make_tenant, problem, running_server
from vault.config import Settings

ROW_FIELDS = {"at", "api_key_id", "ip", "method", "route", "status", "bytes", "request_id"}
CONTRACT_FIELDS = ROW_FIELDS | {"subject_ref_hash", "artefact_id"}


def _rid(response: httpx.Response) -> str:
    return response.headers["X-Request-ID"]


def test_every_request_is_logged_newest_first_with_its_request_id(
    server: ServerThread, tenant: Tenant
) -> None:
    ip = "198.51.100.60"
    missing_id = str(uuid.uuid4())
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        responses = [
            http.get("/v1/access-log", headers=auth(compliance, ip)),
            http.get("/v1/api-keys", headers=auth(compliance, ip)),
            http.delete(f"/v1/api-keys/{missing_id}", headers={**tenant.auth(), **from_ip(ip)}),
            http.get("/v1/tenant", headers={**tenant.auth(), **from_ip(ip)}),
        ]
        rows = access_log(http, compliance, ip=ip)
    assert [r.status_code for r in responses] == [200, 403, 404, 200]
    assert [row["request_id"] for row in rows] == [_rid(r) for r in reversed(responses)]
    for row in rows:
        assert set(row) >= CONTRACT_FIELDS, sorted(row)
    times = [parse_time(row["at"]) for row in rows]
    assert times == sorted(times, reverse=True)
    assert [(row["method"], row["route"], row["status"]) for row in rows] == [
        ("GET", "/v1/tenant", 200),
        ("DELETE", "/v1/api-keys/{key_id}", 404),
        ("GET", "/v1/api-keys", 403),
        ("GET", "/v1/access-log", 200),
    ]
    admin_key_id = rows[0]["api_key_id"]
    assert [row["api_key_id"] for row in rows] == [admin_key_id, admin_key_id] + [
        compliance["id"]
    ] * 2
    assert admin_key_id != compliance["id"]
    assert {row["ip"] for row in rows} == {ip}
    for row, response in zip(rows, reversed(responses), strict=True):
        assert isinstance(row["bytes"], int)
        assert row["bytes"] >= len(response.content) > 0


def test_route_is_the_template_never_a_raw_id(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        victim = create_key(http, tenant, ["read"])
        revoked = http.delete(f"/v1/api-keys/{victim['id']}", headers=tenant.auth())
        malformed = http.delete("/v1/api-keys/not-a-uuid", headers=tenant.auth())
        rows = access_log(http, compliance, api_key_id=first_admin_key_id(http, tenant))
    assert revoked.status_code == 204
    assert malformed.status_code == 404
    by_id = {row["request_id"]: row for row in rows}
    assert by_id[_rid(revoked)]["route"] == "/v1/api-keys/{key_id}"
    assert by_id[_rid(malformed)]["route"] == "/v1/api-keys/{key_id}"
    for row in rows:
        assert victim["id"] not in row["route"]
        assert "not-a-uuid" not in row["route"]


def first_admin_key_id(http: httpx.Client, tenant: Tenant) -> str:
    """The id of the tenant's first admin key (the one `tenant.auth()` uses)."""
    listed = http.get("/v1/api-keys", headers=tenant.auth()).json()["items"]
    key_id: str = next(item["id"] for item in listed if item["name"] == "first admin key")
    return key_id


def test_access_log_times_are_rfc3339_utc_ending_in_z(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        http.get("/v1/access-log", headers=auth(compliance))
        rows = access_log(http, compliance)
    assert rows
    for row in rows:
        assert row["at"].endswith("Z"), row["at"]


def test_request_id_sent_by_the_client_is_kept_and_logged(
    server: ServerThread, tenant: Tenant
) -> None:
    # API.md, Conventions: X-Request-Id is "the client's own, if it sent a sane one".
    mine = f"client-{uuid.uuid4()}"
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        response = http.get("/v1/access-log", headers={**auth(compliance), "X-Request-Id": mine})
        rows = access_log(http, compliance, api_key_id=compliance["id"])
    assert response.headers["X-Request-ID"] == mine
    assert rows[0]["request_id"] == mine


# --- filters ------------------------------------------------------------------------------


def test_filter_by_api_key_id(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        one = create_key(http, tenant, ["read"])
        two = create_key(http, tenant, ["read"])
        ones = [http.get("/v1/api-keys", headers=auth(one)) for _ in range(3)]
        twos = [http.get("/v1/api-keys", headers=auth(two)) for _ in range(2)]
        rows_one = access_log(http, compliance, api_key_id=one["id"])
        rows_two = access_log(http, compliance, api_key_id=two["id"])
        rows_none = access_log(http, compliance, api_key_id=str(uuid.uuid4()))
    assert [row["request_id"] for row in rows_one] == [_rid(r) for r in reversed(ones)]
    assert [row["request_id"] for row in rows_two] == [_rid(r) for r in reversed(twos)]
    assert rows_none == []


def test_filter_by_one_ip_address(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        near = http.get("/v1/tenant", headers={**tenant.auth(), **from_ip("198.51.100.61")})
        neighbour = http.get("/v1/tenant", headers={**tenant.auth(), **from_ip("198.51.100.62")})
        rows = access_log(http, compliance, ip="198.51.100.61")
        v6 = http.get("/v1/tenant", headers={**tenant.auth(), **from_ip("2001:db8:61::1")})
        rows_v6 = access_log(http, compliance, ip="2001:db8:61::1")
    assert [row["request_id"] for row in rows] == [_rid(near)]
    assert _rid(neighbour) not in {row["request_id"] for row in rows}
    assert [row["request_id"] for row in rows_v6] == [_rid(v6)]
    assert rows_v6[0]["ip"] == "2001:db8:61::1"


def test_filter_by_cidr(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        inside = [
            http.get("/v1/tenant", headers={**tenant.auth(), **from_ip(ip)})
            for ip in ("198.51.100.63", "198.51.100.200")
        ]
        outside = [
            http.get("/v1/tenant", headers={**tenant.auth(), **from_ip(ip)})
            for ip in ("203.0.113.63", "198.51.101.1", "2001:db8::63")
        ]
        rows = access_log(http, compliance, ip="198.51.100.0/24")
        rows_v6 = access_log(http, compliance, ip="2001:db8::/32")
    assert [row["request_id"] for row in rows] == [_rid(r) for r in reversed(inside)]
    assert {row["ip"] for row in rows} == {"198.51.100.63", "198.51.100.200"}
    assert [row["request_id"] for row in rows_v6] == [_rid(outside[-1])]


def test_filter_by_status(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        reader = create_key(http, tenant, ["read"])
        ok = http.get("/v1/api-keys", headers=tenant.auth())
        denied = [http.get("/v1/api-keys", headers=auth(reader)) for _ in range(2)]
        rows = access_log(http, compliance, status=403)
        rows_ok = access_log(http, compliance, status=200)
    assert [r.status_code for r in denied] == [403, 403]
    assert [row["request_id"] for row in rows] == [_rid(r) for r in reversed(denied)]
    assert {row["status"] for row in rows} == {403}
    assert _rid(ok) in {row["request_id"] for row in rows_ok}
    assert {row["status"] for row in rows_ok} == {200}


def test_filter_by_since_inclusive_and_until_exclusive(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        traffic = create_key(http, tenant, ["read"])
        calls = [http.get("/v1/api-keys", headers=auth(traffic)) for _ in range(3)]
        rows = access_log(http, compliance, api_key_id=traffic["id"])
        assert [row["request_id"] for row in rows] == [_rid(r) for r in reversed(calls)]
        middle = rows[1]
        since = access_log(http, compliance, api_key_id=traffic["id"], since=middle["at"])
        until = access_log(http, compliance, api_key_id=traffic["id"], until=middle["at"])
        both = access_log(
            http,
            compliance,
            api_key_id=traffic["id"],
            since=middle["at"],
            until=rows[0]["at"],
        )
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
        none = access_log(http, compliance, api_key_id=traffic["id"], since=future)
    # Rows can share a timestamp only if the clock did not move; compare by time, not id.
    middle_at = parse_time(middle["at"])
    assert {row["request_id"] for row in since} == {
        row["request_id"] for row in rows if parse_time(row["at"]) >= middle_at
    }
    assert middle["request_id"] in {row["request_id"] for row in since}
    assert {row["request_id"] for row in until} == {
        row["request_id"] for row in rows if parse_time(row["at"]) < middle_at
    }
    assert middle["request_id"] not in {row["request_id"] for row in until}
    assert middle["request_id"] in {row["request_id"] for row in both}
    assert rows[0]["request_id"] not in {row["request_id"] for row in both}
    assert none == []


def test_filter_since_accepts_an_offset_other_than_z(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        call = http.get("/v1/api-keys", headers=tenant.auth())
        an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).astimezone(
            timezone(timedelta(hours=2))
        )
        rows = access_log(http, compliance, since=an_hour_ago.isoformat())
    assert _rid(call) in {row["request_id"] for row in rows}


def test_subject_ref_filter_is_accepted(server: ServerThread, tenant: Tenant) -> None:
    # API.md lists subject_ref among the access-log filters.
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        http.get("/v1/api-keys", headers=tenant.auth())
        response = http.get(
            "/v1/access-log", params={"subject_ref": "user-12345"}, headers=auth(compliance)
        )
    assert response.status_code == 200, response.text
    # No request of this tenant concerned that subject yet.
    assert response.json()["items"] == []


def test_subject_ref_filter_finds_the_requests_about_that_subject_only(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        app = create_key(http, tenant, ["ingest", "read"])
        for ref in ("anna", "bert"):
            put = http.put(
                f"/v1/subjects/{ref}/records/profile?category=account",
                json={"n": 1},
                headers=auth(app),
            )
            assert put.status_code in (200, 201), put.text
        http.get("/v1/subjects/anna/records/profile", headers=auth(app))
        found = http.get(
            "/v1/access-log", params={"subject_ref": "anna"}, headers=auth(compliance)
        ).json()["items"]
    assert [(row["method"], row["route"]) for row in found] == [
        ("GET", "/v1/subjects/{ref}/records/{name}"),
        ("PUT", "/v1/subjects/{ref}/records/{name}"),
    ]
    assert len({row["subject_ref_hash"] for row in found}) == 1
    assert "anna" not in str(found)


def test_paging_with_limit_and_cursor_loses_and_repeats_nothing(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        traffic = create_key(http, tenant, ["read"])
        calls = [http.get("/v1/api-keys", headers=auth(traffic)) for _ in range(8)]
        expected = [_rid(r) for r in reversed(calls)]
        seen: list[str] = []
        cursor: Any = None
        pages = 0
        while True:
            params: dict[str, Any] = {"api_key_id": traffic["id"], "limit": 3}
            if cursor is not None:
                params["cursor"] = cursor
            response = http.get("/v1/access-log", params=params, headers=auth(compliance))
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page["items"]) <= 3
            seen += [row["request_id"] for row in page["items"]]
            cursor = page["next_cursor"]
            pages += 1
            if cursor is None or pages > 10:
                break
    assert seen == expected
    assert len(set(seen)) == len(seen)
    assert pages <= 4


def test_next_cursor_is_an_opaque_string_or_null(server: ServerThread, tenant: Tenant) -> None:
    # API.md, Conventions: lists return {"items": [...], "next_cursor": "…" | null}.
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        for _ in range(3):
            http.get("/v1/api-keys", headers=tenant.auth())
        first = http.get("/v1/access-log", params={"limit": 2}, headers=auth(compliance)).json()
        last = http.get("/v1/access-log", params={"limit": 500}, headers=auth(compliance)).json()
    assert isinstance(first["next_cursor"], str), first["next_cursor"]
    assert last["next_cursor"] is None


def test_default_page_size_is_50(server: ServerThread, tenant: Tenant) -> None:
    # API.md, Conventions: "Lists take limit (default 50, max 500)".
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        traffic = create_key(http, tenant, ["read"])
        for _ in range(51):
            http.get("/v1/api-keys", headers=auth(traffic))
        page = http.get(
            "/v1/access-log", params={"api_key_id": traffic["id"]}, headers=auth(compliance)
        ).json()
        full = access_log(http, compliance, api_key_id=traffic["id"], limit=500)
    assert len(full) == 51
    assert len(page["items"]) == 50
    assert page["next_cursor"] is not None


@pytest.mark.parametrize(
    "params",
    [
        {"ip": "notanip"},
        {"ip": "198.51.100.0/33"},
        {"status": "abc"},
        {"status": "99"},
        {"since": "yesterday"},
        {"until": "2024-13-01T00:00:00Z"},
        {"since": "2024-01-01T00:00:00"},
        {"since": "9999-12-31T23:59:59-01:00"},
        {"api_key_id": "not-a-uuid"},
        {"limit": "0"},
        {"limit": "lots"},
        {"cursor": "abc"},
        {"colour": "red"},
    ],
    ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()),
)
def test_bad_filter_value_is_422(
    server: ServerThread, tenant: Tenant, params: dict[str, str]
) -> None:
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        response = http.get("/v1/access-log", params=params, headers=auth(compliance))
    assert response.status_code == 422, response.text
    assert problem(response)["detail"]


def test_good_filter_values_together_are_accepted(server: ServerThread, tenant: Tenant) -> None:
    """The positive twin of the 422 cases: every filter at once, well-formed."""
    params = {
        "ip": "198.51.100.0/24",
        "status": "200",
        "since": "2024-01-01T00:00:00Z",
        "until": "2999-01-01T00:00:00+02:00",
        "api_key_id": str(uuid.uuid4()),
        "limit": "10",
    }
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        response = http.get("/v1/access-log", params=params, headers=auth(compliance))
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next_cursor": None}


# --- tenant isolation ---------------------------------------------------------------------


def test_a_tenant_never_sees_another_tenants_rows(
    server: ServerThread, new_tenant: Callable[[], Tenant]
) -> None:
    a, b = new_tenant(), new_tenant()
    ip = "198.51.100.64"
    with server.client() as http:
        a_compliance = create_key(http, a, ["compliance"])
        b_compliance = create_key(http, b, ["compliance"])
        a_calls = [
            http.get("/v1/access-log", headers=auth(a_compliance, ip)),
            http.get("/v1/api-keys", headers={**a.auth(), **from_ip(ip)}),
        ]
        b_call = http.get("/v1/api-keys", headers={**b.auth(), **from_ip(ip)})
        b_by_ip = access_log(http, b_compliance, ip=ip)
        b_by_a_key = access_log(http, b_compliance, api_key_id=a_compliance["id"])
        b_all = access_log(http, b_compliance, limit=500)
        a_by_ip = access_log(http, a_compliance, ip=ip)
    a_ids = {_rid(r) for r in a_calls}
    assert [row["request_id"] for row in b_by_ip] == [_rid(b_call)]
    assert b_by_a_key == []
    assert not a_ids & {row["request_id"] for row in b_all}
    assert a_compliance["id"] not in {row["api_key_id"] for row in b_all}
    # Positive: A sees its own rows.
    assert {row["request_id"] for row in a_by_ip} == a_ids


# --- client IP: X-Forwarded-For -----------------------------------------------------------


def _logged_ip(http: httpx.Client, compliance: dict[str, Any], response: httpx.Response) -> str:
    rows = access_log(http, compliance, api_key_id=compliance["id"], limit=20)
    by_id = {row["request_id"]: row for row in rows}
    ip: str = by_id[_rid(response)]["ip"]
    return ip


def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    settings: Settings, database_url: str
) -> None:
    untrusting = dataclasses.replace(settings, trusted_proxies=())
    tenant = make_tenant(settings, database_url)
    with running_server(untrusting, database_url) as vault, vault.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        spoofed = http.get("/v1/access-log", headers=auth(compliance, "203.0.113.50"))
        logged = _logged_ip(http, compliance, spoofed)
        listed = http.get("/v1/api-keys", headers=tenant.auth()).json()["items"]
    assert spoofed.status_code == 200
    assert logged == "127.0.0.1"
    last_ip = next(k["last_used_ip"] for k in listed if k["id"] == compliance["id"])
    assert last_ip.split("/")[0] == "127.0.0.1"


def test_forwarded_for_from_a_trusted_proxy_is_believed(
    server: ServerThread, tenant: Tenant
) -> None:
    """The positive twin: the session server trusts 127.0.0.1."""
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        response = http.get("/v1/access-log", headers=auth(compliance, "203.0.113.50"))
        assert _logged_ip(http, compliance, response) == "203.0.113.50"


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        ("203.0.113.50, 127.0.0.1", "203.0.113.50"),
        ("198.51.100.77, 203.0.113.51", "203.0.113.51"),
        ("198.51.100.78, 203.0.113.52, 127.0.0.1", "203.0.113.52"),
        ("127.0.0.1", "127.0.0.1"),
        ("not-an-ip", "127.0.0.1"),
        ("198.51.100.79, not-an-ip", "127.0.0.1"),
        ("198.51.100.80 ,2001:db8::52", "2001:db8::52"),
    ],
)
def test_forwarded_for_is_read_right_to_left_skipping_trusted_proxies(
    server: ServerThread, tenant: Tenant, forwarded: str, client: str
) -> None:
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        response = http.get(
            "/v1/access-log", headers={**auth(compliance), "X-Forwarded-For": forwarded}
        )
        assert response.status_code == 200, response.text
        assert _logged_ip(http, compliance, response) == client


def test_forwarded_for_with_an_ipv6_zone_does_not_break_the_request(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        response = http.get(
            "/v1/access-log", headers={**auth(compliance), "X-Forwarded-For": "fe80::1%eth0"}
        )
        assert response.status_code == 200, response.text
        assert _logged_ip(http, compliance, response) in ("fe80::1", "127.0.0.1")


def test_request_refused_for_its_address_is_logged_for_the_keys_tenant(
    server: ServerThread, tenant: Tenant
) -> None:
    # The key is genuine, so tenant and key are known: the tenant's compliance team must be
    # able to see that its key was tried from outside its allowed networks.
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        fenced = create_key(http, tenant, ["read"], allowed_cidrs=["203.0.113.0/24"])
        allowed = http.get("/v1/api-keys", headers=auth(fenced, "203.0.113.70"))
        refused = http.get("/v1/api-keys", headers=auth(fenced, "198.51.100.70"))
        rows = access_log(http, compliance, api_key_id=fenced["id"])
    assert (allowed.status_code, refused.status_code) == (403, 403)
    assert [row["request_id"] for row in rows] == [_rid(refused), _rid(allowed)]
    assert rows[0]["ip"] == "198.51.100.70"
