"""A tenant's own secret that another tenant already uses (issue 18, item 7): the answer
to registering it never tells, the secret then authenticates nobody (so one key never
authenticates as two tenants, and no tenant can squat a secret another will register),
and registrations are limited per tenant."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import httpx

from tests.api.helpers import create_key, from_ip
from tests.support import ServerThread, Tenant, bearer, problem
from vault.domain.api_keys import OWN_SECRETS_PER_HOUR


def _register(http: httpx.Client, tenant: Tenant, secret: str) -> httpx.Response:
    return http.post(
        "/v1/api-keys",
        json={"name": "own", "scopes": ["admin"], "secret": secret, "owner": "own-admin"},
        headers=tenant.auth(),
    )


def _tenant_of(http: httpx.Client, secret: str, ip: str) -> Any:
    response = http.get("/v1/tenant", headers={**bearer(secret), **from_ip(ip)})
    return response.json()["id"] if response.status_code == 200 else response.status_code


def _shape(response: httpx.Response) -> tuple[int, list[str], list[str]]:
    body = response.json()
    return response.status_code, sorted(body), sorted(response.headers.keys())


def test_registering_another_tenants_secret_answers_like_a_fresh_one(
    server: ServerThread, new_tenant: Callable[[], Tenant]
) -> None:
    holder, prober = new_tenant(), new_tenant()
    taken, fresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with server.client() as http:
        assert _register(http, holder, taken).status_code == 201
        guessed = _register(http, prober, taken)
        unused = _register(http, prober, fresh)
    # Was 409 for a secret any live key of any tenant held: an unthrottled oracle.
    assert guessed.status_code == 201, guessed.text
    assert _shape(guessed) == _shape(unused)
    assert guessed.json()["secret"] == taken


def test_a_secret_two_tenants_registered_authenticates_as_neither(
    server: ServerThread, new_tenant: Callable[[], Tenant]
) -> None:
    first, second = new_tenant(), new_tenant()
    shared, own = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with server.client() as http:
        assert _register(http, first, shared).status_code == 201
        before = _tenant_of(http, shared, "203.0.113.71")
        assert _register(http, second, shared).status_code == 201
        assert _register(http, second, own).status_code == 201
        after = _tenant_of(http, shared, "203.0.113.72")
        second_own = _tenant_of(http, own, "203.0.113.73")
        first_admin = http.get("/v1/tenant", headers=first.auth())
    assert before == str(first.id)
    # Neither tenant's: not the first (whose key the second could otherwise confirm
    # and ride on), not the second (which could otherwise squat a secret the first was
    # about to register and receive its data).
    assert after == 401
    assert second_own == str(second.id)  # the second tenant's other keys are untouched
    assert first_admin.status_code == 200


def test_a_squatted_secret_never_takes_the_later_tenants_data(
    server: ServerThread, new_tenant: Callable[[], Tenant]
) -> None:
    squatter, victim = new_tenant(), new_tenant()
    planned = secrets.token_urlsafe(32)
    with server.client() as http:
        assert _register(http, squatter, planned).status_code == 201
        registered = _register(http, victim, planned)
        used = http.put(
            "/v1/subjects/someone/records/profile",
            params={"category": "account"},
            json={"name": "not for the squatter"},
            headers={**bearer(planned), **from_ip("203.0.113.74")},
        )
    assert registered.status_code == 201
    assert used.status_code == 401  # refused, not written into the squatter's tenant


def test_reusing_a_secret_of_the_tenants_own_keys_is_409(
    server: ServerThread, tenant: Tenant
) -> None:
    live, revoked = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with server.client() as http:
        assert _register(http, tenant, live).status_code == 201
        old = _register(http, tenant, revoked).json()
        assert http.delete(f"/v1/api-keys/{old['id']}", headers=tenant.auth()).status_code == 204
        again = _register(http, tenant, live)
        after_revocation = _register(http, tenant, revoked)
    for response in (again, after_revocation):
        assert problem(response)["status"] == 409
        assert live not in response.text and revoked not in response.text


def test_own_secret_registrations_are_limited_per_tenant_per_hour(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        answers = [
            _register(http, tenant, secrets.token_urlsafe(32)).status_code
            for _ in range(OWN_SECRETS_PER_HOUR)
        ]
        refused = _register(http, tenant, secrets.token_urlsafe(32))
        generated = create_key(http, tenant, ["read"])
    assert answers == [201] * OWN_SECRETS_PER_HOUR
    assert problem(refused)["status"] == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600
    assert generated["secret"].startswith("dv_")  # keys the vault generates are not limited
