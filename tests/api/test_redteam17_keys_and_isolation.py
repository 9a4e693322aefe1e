"""Red team 17: API keys and tenant isolation from outside. The failed-auth throttle and
allowed CIDRs against addresses an attacker picks, the erasure rate brake against many
keys, and another tenant's hold, erasure and key ids (404 exactly like a missing one).

The session server trusts X-Forwarded-For from 127.0.0.1 (tests/api/helpers.py
`from_ip`) and throttles after 5 failures per 60 s (tests/conftest.py)."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import httpx
import pytest

from tests.api.helpers import auth, create_key, from_ip, subject_url
from tests.support import ServerThread, Tenant, bearer, problem


def _bad_key() -> str:
    return f"dv_{'q' * 12}_{secrets.token_urlsafe(32)}"


def _fail_from(http: httpx.Client, ip: str) -> int:
    return http.get("/v1/api-keys", headers={**bearer(_bad_key()), **from_ip(ip)}).status_code


def test_ipv6_neighbours_in_one_64_share_the_failed_auth_throttle(server: ServerThread) -> None:
    """Fixed: an IPv6 client is throttled by its /64, the least any subscriber is given."""
    block = f"2001:db8:{secrets.randbelow(0xFFFF):x}:{secrets.randbelow(0xFFFF):x}"
    with server.client() as http:
        first = [_fail_from(http, f"{block}::1") for _ in range(5)]
        neighbours = [_fail_from(http, f"{block}::{n:x}") for n in range(2, 12)]
    assert first == [401] * 5
    assert set(neighbours) == {429}, neighbours


def test_the_next_ipv6_64_of_the_same_48_has_a_budget_of_its_own(server: ServerThread) -> None:
    site = f"2001:db8:{secrets.randbelow(0xFFFF):x}"
    with server.client() as http:
        spent = [_fail_from(http, f"{site}:10:ffff:ffff:ffff:ffff") for _ in range(6)]
        next_64 = [_fail_from(http, f"{site}:11::") for _ in range(5)]
    assert spent == [401] * 5 + [429], spent
    assert next_64 == [401] * 5, next_64


def test_an_ipv4_mapped_address_spends_its_ipv4_addresss_budget(server: ServerThread) -> None:
    # 198.18.0.0/15 (benchmarking): no other test of the session's server fails from it.
    ip = f"198.18.{secrets.randbelow(256)}.{secrets.randbelow(256)}"
    with server.client() as http:
        answers = [_fail_from(http, spelt) for spelt in [ip, f"::ffff:{ip}"] * 3]
    assert answers == [401] * 5 + [429], answers


def test_one_ipv4_address_is_throttled_whatever_the_spelling_of_the_header(
    server: ServerThread,
) -> None:
    """Inner spaces, a second X-Forwarded-For header, or a forged hop to the left do not make
    a new client: the address nearest the trusted proxy is the one counted."""
    ip = f"198.51.100.{secrets.randbelow(200) + 20}"
    xff = "X-Forwarded-For"
    spellings: list[list[tuple[str, str]]] = [
        [(xff, ip)],
        [(xff, f"192.0.2.9 ,   {ip}")],
        [(xff, f"203.0.113.{secrets.randbelow(250)}, {ip}")],
        [(xff, "192.0.2.7"), (xff, ip)],
        [(xff, f"10.9.8.7,{ip}")],
        [(xff, ip)],
        [(xff, f"1.1.1.1 , {ip}")],
    ]
    answers = []
    with server.client() as http:
        for headers in spellings:
            sent = httpx.Headers(headers)
            sent["Authorization"] = f"Bearer {_bad_key()}"
            answers.append(http.get("/v1/api-keys", headers=sent).status_code)
    assert answers[:5] == [401] * 5 and answers[5:] == [429, 429], answers


def test_a_forged_hop_cannot_satisfy_a_keys_allowed_cidrs(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        key = create_key(http, tenant, ["compliance"], allowed_cidrs=["203.0.113.0/24"])
        bearer_only = bearer(key["secret"])
        forged_left = http.get(
            "/v1/access-log",
            headers={**bearer_only, "X-Forwarded-For": "203.0.113.5, 198.51.100.9"},
        )
        two_headers = http.get(
            "/v1/access-log",
            headers=httpx.Headers(
                [("Authorization", f"Bearer {key['secret']}"),
                 ("X-Forwarded-For", "203.0.113.5"), ("X-Forwarded-For", "198.51.100.9")]
            ),
        )  # fmt: skip
        mapped = http.get(
            "/v1/access-log", headers={**bearer_only, "X-Forwarded-For": "::ffff:198.51.100.9"}
        )
        inside = http.get("/v1/access-log", headers=auth(key, "203.0.113.5"))
    assert forged_left.status_code == 403, forged_left.text
    assert two_headers.status_code == 403, two_headers.text
    assert mapped.status_code == 403, mapped.text
    assert inside.status_code == 200, inside.text


@pytest.mark.parametrize("allowed", ["203.0.113.0/24", "::ffff:203.0.113.0/120"])
def test_an_ipv4_client_is_one_address_to_cidrs_and_the_access_log(
    server: ServerThread, tenant: Tenant, allowed: str
) -> None:
    """An IPv4 client reported as ::ffff:a.b.c.d (a dual-stack listener or proxy) is its
    IPv4 address to a key's allowed CIDRs, written in either form, and to the access log:
    the throttle already counted it so, and a key limited to 203.0.113.0/24 refused it."""
    with server.client() as http:
        key = create_key(http, tenant, ["compliance"], allowed_cidrs=[allowed])
        answers = [
            http.get("/v1/access-log", headers=auth(key, spelt)).status_code
            for spelt in ("203.0.113.5", "::ffff:203.0.113.5")
        ]
        outside = http.get("/v1/access-log", headers=auth(key, "::ffff:203.0.114.5"))
        logged = http.get(
            "/v1/access-log", params={"api_key_id": key["id"]}, headers=auth(key, "203.0.113.5")
        ).json()["items"]
        found_by_mapped = http.get(
            "/v1/access-log",
            params={"api_key_id": key["id"], "ip": "::ffff:203.0.113.0/120"},
            headers=auth(key, "203.0.113.5"),
        ).json()["items"]
    assert answers == [200, 200], answers
    assert outside.status_code == 403, outside.text
    # The refused use is logged too, under the same spelling; a filter written in the
    # mapped spelling finds what was logged.
    assert {row["ip"] for row in logged} == {"203.0.113.5", "203.0.114.5"}, logged
    assert {row["ip"] for row in found_by_mapped} == {"203.0.113.5"}, found_by_mapped


def test_many_erasure_keys_share_the_tenants_rate_brake(
    server: ServerThread, tenant: Tenant
) -> None:
    """A thief with an admin key minting one erasure key per request gets the brake all
    the same: the limit is the tenant's, not a key's."""
    with server.client() as http:
        assert http.patch(
            "/v1/tenant/settings", json={"erasure_rate_limit_per_hour": 2}, headers=tenant.auth()
        ).status_code == 200  # fmt: skip
        answers = []
        for n in range(4):
            key = create_key(http, tenant, ["erasure"])
            answer = http.post(subject_url(f"rt17-brake-{n}", "erasure"), headers=auth(key))
            assert answer.status_code == 202, answer.text
            answers.append(answer.json())
    braked = [a["not_before"] != a["requested_at"] for a in answers]
    assert braked == [False, False, True, True], answers


# --- isolation ------------------------------------------------------------------------------


def _comparable(response: httpx.Response) -> tuple[int, str, dict[str, Any]]:
    body = dict(problem(response))
    body.pop("request_id", None)
    body.pop("instance", None)
    return response.status_code, response.headers["content-type"], body


def test_another_tenants_hold_erasure_and_key_ids_answer_like_missing_ones(
    server: ServerThread, tenant: Tenant, new_tenant: Any
) -> None:
    other: Tenant = new_tenant()
    with server.client() as http:
        theirs = {
            "officer": create_key(http, other, ["compliance"]),
            "privacy": create_key(http, other, ["erasure"]),
        }
        their_hold = http.post(
            "/v1/holds",
            json={"subject_ref": "rt17-iso", "reason": "litigation", "reference": "X"},
            headers=auth(theirs["officer"]),
        ).json()
        their_erasure = http.post(
            subject_url("rt17-iso-gone", "erasure"), headers=auth(theirs["privacy"])
        ).json()
        their_key = create_key(http, other, ["read"])
        mine = {
            "officer": create_key(http, tenant, ["compliance"]),
            "privacy": create_key(http, tenant, ["erasure"]),
        }
        missing = str(uuid.uuid4())
        calls: list[tuple[str, str, str, dict[str, Any] | None]] = [
            ("GET", "/v1/holds/{}", "officer", None),
            ("GET", "/v1/holds/{}/impact", "officer", None),
            ("PATCH", "/v1/holds/{}", "officer", {"note": "mine now"}),
            ("POST", "/v1/holds/{}/release", "officer", {"reason": "x"}),
            ("DELETE", "/v1/holds/{}/release", "officer", None),
            ("GET", "/v1/erasures/{}", "privacy", None),
            ("POST", "/v1/erasures/{}/cancel", "privacy", None),
            ("GET", "/v1/erasures/{}/receipt", "privacy", None),
        ]
        ids = {"holds": their_hold["id"], "erasures": their_erasure["id"]}
        for method, template, who, body in calls:
            kind = template.split("/")[2]
            foreign = http.request(
                method, template.format(ids[kind]), json=body, headers=auth(mine[who])
            )
            absent = http.request(
                method, template.format(missing), json=body, headers=auth(mine[who])
            )
            assert _comparable(foreign) == _comparable(absent), (method, template, foreign.text)
            assert foreign.status_code == 404, (method, template, foreign.text)
        revoke = http.delete(f"/v1/api-keys/{their_key['id']}", headers=tenant.auth())
        revoke_missing = http.delete(f"/v1/api-keys/{missing}", headers=tenant.auth())
        listed = http.get(
            "/v1/holds", params={"subject_ref": "rt17-iso"}, headers=auth(mine["officer"])
        )
        theirs_after = http.get(f"/v1/holds/{their_hold['id']}", headers=auth(theirs["officer"]))
    assert _comparable(revoke) == _comparable(revoke_missing)
    assert listed.json()["items"] == []
    shown = theirs_after.json()
    assert shown["note"] is None and shown["release_requested_by"] is None
    assert [e["action"] for e in shown["events"]] == ["placed"]


# --- bring your own key -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [
        "acegikmoqsuwybdfhjlnprtvxz0246813579",
        "aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
        "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6",
        "Aa1!Aa1!Bb2@Bb2@Cc3#Cc3#Dd4$Dd4$",
    ],
)
def test_patterned_own_secrets_are_refused_as_guessable(
    server: ServerThread, tenant: Tenant, secret: str
) -> None:
    """Fixed: runs of any step up to 5 in any case, interleaved runs and blocks that
    repeat with a step are what a guesser tries first."""
    with server.client() as http:
        answer = http.post(
            "/v1/api-keys",
            json={"name": "own", "scopes": ["read"], "secret": secret},
            headers=tenant.auth(),
        )
    assert answer.status_code == 422, answer.status_code
    assert secret not in answer.text
    assert [error["field"] for error in problem(answer)["errors"]] == ["secret"]
