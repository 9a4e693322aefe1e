"""Red team 5: a stolen key keeps being tried after its revocation, and the tenant cannot see it.

docs/runbook.md (`DatavaultErasureRateBrake`): a stolen erasure key is revoked, and "the
access log (`GET /v1/access-log?api_key_id=…`) shows the key's IPs". DESIGN.md: every
request is logged with its API key id and client IP, failed ones included. A key refused
for its address is logged under its tenant and key (vault/http/middleware.py
`refused_key`), but a revoked or expired key's attempts go to the deployment-wide chain
with the prefix only: the tenant's compliance team, searching by the key it revoked,
never sees that the thief is still trying, nor from where.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from tests.api.helpers import auth, create_key, parse_time, subject_url
from tests.support import ServerThread, Tenant

THIEF = "203.0.113.77"


def test_attempts_with_a_revoked_key_are_in_its_tenants_access_log(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        stolen = create_key(http, tenant, ["erasure"])
        compliance = create_key(http, tenant, ["compliance"])
        used = http.get("/v1/erasures", headers=auth(stolen, THIEF))
        assert used.status_code == 200
        revoked = http.delete(f"/v1/api-keys/{stolen['id']}", headers=tenant.auth())
        assert revoked.status_code == 204
        tried = http.post(subject_url("victim-1", "erasure"), headers=auth(stolen, THIEF))
        assert tried.status_code == 401
        rows = http.get(
            "/v1/access-log", params={"api_key_id": stolen["id"]}, headers=auth(compliance)
        ).json()["items"]
    # The control: its use before the revocation is found by the same search.
    assert any(row["request_id"] == used.headers["X-Request-Id"] for row in rows)
    attempt = [row for row in rows if row["request_id"] == tried.headers["X-Request-Id"]]
    assert len(attempt) == 1, "the revoked key's attempt is not under its tenant and key id"
    assert attempt[0]["ip"] == THIEF
    assert attempt[0]["status"] == 401


def test_attempts_with_an_expired_key_are_in_its_tenants_access_log(
    server: ServerThread, tenant: Tenant
) -> None:
    expires = (datetime.now(UTC) + timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
    with server.client() as http:
        lapsed = create_key(http, tenant, ["read"], expires_at=expires)
        compliance = create_key(http, tenant, ["compliance"])
        time.sleep(
            max(0.0, (parse_time(lapsed["expires_at"]) - datetime.now(UTC)).total_seconds()) + 0.5
        )
        tried = http.get(subject_url("victim-2"), headers=auth(lapsed, THIEF))
        assert tried.status_code == 401
        rows = http.get(
            "/v1/access-log", params={"api_key_id": lapsed["id"]}, headers=auth(compliance)
        ).json()["items"]
    [attempt] = [row for row in rows if row["request_id"] == tried.headers["X-Request-Id"]]
    assert attempt["ip"] == THIEF and attempt["status"] == 401
    assert attempt["key_prefix"] == lapsed["prefix"]


def test_a_wrong_secret_stays_in_the_deployment_chain_not_the_tenants(
    server: ServerThread, tenant: Tenant
) -> None:
    """The negative: a secret that names no key (an issued key's prefix with another
    secret) is not logged under the key its prefix names."""
    with server.client() as http:
        real = create_key(http, tenant, ["read"])
        compliance = create_key(http, tenant, ["compliance"])
        forged = f"dv_{real['prefix']}_{'A' * 43}"
        tried = http.get(subject_url("victim-3"), headers={"Authorization": f"Bearer {forged}"})
        assert tried.status_code == 401
        rows = http.get(
            "/v1/access-log", params={"api_key_id": real["id"]}, headers=auth(compliance)
        ).json()["items"]
    assert all(row["request_id"] != tried.headers["X-Request-Id"] for row in rows)
