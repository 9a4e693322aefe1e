"""Throttling of repeated failed authentication per client IP, and where failed attempts
are logged (API.md Conventions; DESIGN.md "API keys", "Access log").

The session server is configured with 5 failures per 60 s (tests/conftest.py); one test
starts a server with the shipped defaults to check them against the contract."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import uuid
from typing import Any

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.api.helpers import access_log, auth, create_key, from_ip
from tests.support import ServerThread, Tenant, bearer, problem, running_server
from vault.config import Settings
from vault.domain.throttle import FailureThrottle


def _bad_key() -> str:
    return f"dv_{'q' * 12}_{secrets.token_urlsafe(32)}"


def _fail(http: httpx.Client, ip: str, times: int) -> list[int]:
    return [
        http.get("/v1/api-keys", headers={**bearer(_bad_key()), **from_ip(ip)}).status_code
        for _ in range(times)
    ]


def _assert_throttled(response: httpx.Response, window: float) -> None:
    assert response.status_code == 429, response.text
    problem(response)
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= window


def test_failed_attempts_up_to_the_limit_are_401(server: ServerThread) -> None:
    with server.client() as http:
        assert _fail(http, "198.51.100.40", 5) == [401] * 5


def test_attempt_after_the_limit_of_failures_is_429_with_retry_after(
    server: ServerThread,
) -> None:
    ip = "198.51.100.41"
    with server.client() as http:
        assert _fail(http, ip, 5) == [401] * 5
        throttled = http.get("/v1/api-keys", headers={**bearer(_bad_key()), **from_ip(ip)})
        missing = http.get("/v1/api-keys", headers=from_ip(ip))
    _assert_throttled(throttled, server.settings.auth_failure_window_seconds)
    _assert_throttled(missing, server.settings.auth_failure_window_seconds)


def test_valid_key_is_never_refused_by_the_failed_auth_throttle(
    server: ServerThread, tenant: Tenant
) -> None:
    # API.md, Conventions: "...further ones from that IP get 429 ...; a valid key is never
    # refused by this." (A guesser on a shared NAT address must not lock out the tenant.)
    ip = "198.51.100.42"
    with server.client() as http:
        assert _fail(http, ip, 6)[-1] == 429
        valid = http.get("/v1/api-keys", headers={**tenant.auth(), **from_ip(ip)})
    assert valid.status_code == 200, valid.text


def test_throttle_of_one_ip_does_not_affect_another(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        assert _fail(http, "198.51.100.43", 6)[-1] == 429
        other_bad = http.get(
            "/v1/api-keys", headers={**bearer(_bad_key()), **from_ip("198.51.100.44")}
        )
        other_valid = http.get(
            "/v1/api-keys", headers={**tenant.auth(), **from_ip("198.51.100.45")}
        )
        same_v6_net = _fail(http, "2001:db8:43::1", 1)
    assert other_bad.status_code == 401
    assert other_valid.status_code == 200
    assert same_v6_net == [401]


def test_wrong_scope_and_wrong_address_are_not_counted_as_failed_authentication(
    server: ServerThread, tenant: Tenant
) -> None:
    ip = "198.51.100.46"
    with server.client() as http:
        reader = create_key(http, tenant, ["read"])
        fenced = create_key(http, tenant, ["compliance"], allowed_cidrs=["203.0.113.0/24"])
        refusals = [
            http.get("/v1/api-keys", headers=auth(reader, ip)).status_code for _ in range(4)
        ]
        refusals += [
            http.get("/v1/access-log", headers=auth(fenced, ip)).status_code for _ in range(4)
        ]
        after = _fail(http, ip, 1)
    assert refusals == [403] * 8
    assert after == [401]


def _metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no {name} {labels} in /metrics")


def test_metrics_state_the_per_process_limit_and_count_tracked_and_throttled(
    server: ServerThread,
) -> None:
    """With N API replicas an address gets N x the limit: /metrics says what the limit
    of this process is, how many addresses it tracks and how many attempts it refused."""
    with server.client() as http:
        before = http.get("/metrics").text
        assert _fail(http, "198.51.100.150", 6)[-1] == 429
        after = http.get("/metrics").text
    assert _metric(after, "datavault_auth_failure_limit") == server.settings.auth_failure_limit
    assert _metric(after, "datavault_auth_failure_window_seconds") == 60
    assert _metric(after, "datavault_auth_throttle_tracked_addresses") >= 1
    throttled = "datavault_auth_failures_total"
    assert _metric(after, throttled, reason="throttled") >= 1 + (
        _metric(before, throttled, reason="throttled") if "throttled" in before else 0
    )
    assert "198.51.100.150" not in after


class _Clock:
    """Stands in for the throttle's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _throttle_of(vault: ServerThread) -> FailureThrottle:
    return vault.state.auth_throttle


def test_shipped_throttle_defaults_match_the_contract(
    settings: Settings, database_url: str, tenant: Tenant
) -> None:
    # API.md, Conventions: "More than 20 requests with a missing or wrong key from one IP
    # within a minute: further ones from that IP get 429 with Retry-After for 60 s; a
    # valid key is never refused by this."
    shipped = Settings()
    defaults = dataclasses.replace(
        settings,
        auth_failure_limit=shipped.auth_failure_limit,
        auth_failure_window_seconds=shipped.auth_failure_window_seconds,
    )
    ip = "198.51.100.47"
    clock = _Clock()
    with running_server(defaults, database_url) as vault, vault.client() as http:

        def attempt() -> httpx.Response:
            return http.get("/v1/api-keys", headers={**bearer(_bad_key()), **from_ip(ip)})

        # The throttle the app built from the settings, on a clock the test moves (its
        # limit and window stay what the shipped settings made them).
        _throttle_of(vault)._clock = clock
        statuses = []
        for _ in range(20):
            statuses.append(attempt().status_code)
            clock.now += 1.0  # spread over 20 s: a sliding window would lift early
        crossing = clock.now
        first = attempt()
        clock.now = crossing + 59.5
        late = attempt()
        valid_while_blocked = http.get(
            "/v1/api-keys", headers={**tenant.auth(), **from_ip(ip)}
        ).status_code
        clock.now = crossing + 60
        after = attempt()
    assert statuses == [401] * 20
    _assert_throttled(first, 60)
    assert first.headers["Retry-After"] == "60"
    _assert_throttled(late, 60)
    assert late.headers["Retry-After"] == "1"
    assert valid_while_blocked == 200
    assert after.status_code == 401, after.text


# --- where failed attempts are logged -----------------------------------------------------


def test_tenant_access_log_never_shows_failed_authentication_of_other_callers(
    server: ServerThread, tenant: Tenant
) -> None:
    ip = "198.51.100.48"
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        # A wrong secret behind this tenant's own real prefix, a random key, no key at all.
        forged = f"dv_{compliance['prefix']}_{secrets.token_urlsafe(32)}"
        failed = [
            http.get("/v1/access-log", headers={**bearer(forged), **from_ip(ip)}),
            http.get("/v1/access-log", headers={**bearer(_bad_key()), **from_ip(ip)}),
            http.get("/v1/access-log", headers=from_ip(ip)),
        ]
        assert [r.status_code for r in failed] == [401, 401, 401]
        ok = http.get("/v1/access-log", headers=auth(compliance, ip))
        assert ok.status_code == 200
        by_ip = access_log(http, compliance, ip=ip)
        everything = access_log(http, compliance, limit=500)
    failed_ids = {r.headers["X-Request-ID"] for r in failed}
    # Positive: the tenant's own request from that address is there.
    assert [row["request_id"] for row in by_ip] == [ok.headers["X-Request-ID"]]
    assert not failed_ids & {row["request_id"] for row in everything}
    assert not [row for row in everything if row["status"] in (401, 429)]
    assert all(row["api_key_id"] is not None for row in everything)


def _deployment_rows(database_url: str, request_ids: list[str]) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction():
                await conn.execute(
                    "SELECT set_config('datavault.tenant_id', $1, true)", str(uuid.UUID(int=0))
                )
                rows = await conn.fetch(
                    "SELECT * FROM access_log WHERE request_id = ANY($1::text[])", request_ids
                )
        finally:
            await conn.close()
        return [dict(row) for row in rows]

    return asyncio.run(run())


def test_failed_authentication_is_logged_in_the_deployment_chain_with_prefix_only(
    server: ServerThread, database_url: str
) -> None:
    # DESIGN.md, Access log: "Failed authentication is logged with the presented key's
    # public prefix, never the secret; rows with no tenant go to a deployment-wide chain."
    ip = "198.51.100.49"
    prefix = "abcdefgh2345"
    secret_part = secrets.token_urlsafe(32)
    with server.client() as http:
        response = http.get(
            "/v1/api-keys", headers={**bearer(f"dv_{prefix}_{secret_part}"), **from_ip(ip)}
        )
    assert response.status_code == 401
    rows = _deployment_rows(database_url, [response.headers["X-Request-ID"]])
    assert len(rows) == 1
    row = rows[0]
    assert row["tenant_id"] == uuid.UUID(int=0)
    assert row["key_prefix"] == prefix
    assert row["api_key_id"] is None
    assert row["status"] == 401
    assert row["route"] == "/v1/api-keys"
    assert str(row["ip"]).split("/")[0] == ip
    assert secret_part not in repr(row)
