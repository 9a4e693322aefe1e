"""Nothing kept ends by one hand: a hold's expiry only moves later, two keys are two
people only when their owners (and their makers) differ, a release request lapses and
can be withdrawn."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from tests.api.helpers import auth, create_key, operator_key, rfc3339
from tests.support import ServerThread, Tenant


def _hold(http: httpx.Client, key: dict[str, Any], reason: str, **fields: Any) -> dict[str, Any]:
    response = http.post(
        "/v1/holds", json={"reason": reason, "reference": "CASE-9", **fields}, headers=auth(key)
    )
    assert response.status_code == 201, response.text
    hold: dict[str, Any] = response.json()
    return hold


def _release(http: httpx.Client, hold: dict[str, Any], key: dict[str, Any]) -> httpx.Response:
    return http.post(
        f"/v1/holds/{hold['id']}/release", json={"reason": "case closed"}, headers=auth(key)
    )


def _in(days: float) -> str:
    return rfc3339(datetime.now(UTC) + timedelta(days=days))


def test_a_hold_without_expiry_cannot_be_given_one(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        officer = create_key(http, tenant, ["compliance"])
        hold = _hold(http, officer, "litigation", subject_ref="lia")
        soon = http.patch(
            f"/v1/holds/{hold['id']}",
            json={"expires_at": rfc3339(datetime.now(UTC) + timedelta(seconds=3))},
            headers=auth(officer),
        )
        shown = http.get(f"/v1/holds/{hold['id']}", headers=auth(officer)).json()
    assert soon.status_code == 422, soon.text
    assert shown["expires_at"] is None and shown["active"]
    assert [e["action"] for e in shown["events"]] == ["placed"]


def test_an_expiry_only_moves_later_or_goes(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        officer = create_key(http, tenant, ["compliance"])
        hold = _hold(http, officer, "billing", expires_at=_in(30))
        url = f"/v1/holds/{hold['id']}"
        earlier = http.patch(url, json={"expires_at": _in(10)}, headers=auth(officer))
        later = http.patch(url, json={"expires_at": _in(60)}, headers=auth(officer))
        removed = http.patch(url, json={"expires_at": None}, headers=auth(officer))
    assert earlier.status_code == 422
    assert later.status_code == 200
    assert removed.status_code == 200 and removed.json()["expires_at"] is None


def test_two_keys_of_one_owner_cannot_release_a_law_enforcement_hold(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        first = create_key(http, tenant, ["compliance"], owner="kim@example.test")
        second = create_key(http, tenant, ["compliance"], owner="kim@example.test")
        hold = _hold(http, first, "law_enforcement")
        asked = _release(http, hold, first)
        confirmed = _release(http, hold, second)
        again = _release(http, hold, first)
        shown = http.get(f"/v1/holds/{hold['id']}", headers=auth(first)).json()
    assert asked.status_code == 202
    assert confirmed.status_code == 409 and again.status_code == 409
    assert shown["released_at"] is None and shown["active"]


def test_a_key_and_the_key_that_made_it_are_not_two_people(
    server: ServerThread, tenant: Tenant
) -> None:
    """An admin+compliance key that mints a second compliance key (another owner named)
    has seen that key's secret: the two cannot release together, either way round."""
    with server.client() as http:
        maker = create_key(http, tenant, ["admin", "compliance"], owner="max")
        made = http.post(
            "/v1/api-keys",
            json={"name": "made", "scopes": ["compliance"], "owner": "not-max"},
            headers=auth(maker),
        ).json()
        hold = _hold(http, maker, "litigation")
        assert _release(http, hold, made).status_code == 202
        by_maker = _release(http, hold, maker)
    assert by_maker.status_code == 409, by_maker.text


def test_two_keys_one_admin_minted_are_one_person(server: ServerThread, tenant: Tenant) -> None:
    """The admin saw both secrets when it minted them, whatever owners it wrote down."""
    with server.client() as http:
        alice = create_key(http, tenant, ["compliance"], owner="alice")
        bob = create_key(http, tenant, ["compliance"], owner="bob")
        hold = _hold(http, alice, "litigation")
        assert _release(http, hold, alice).status_code == 202
        confirmed = _release(http, hold, bob)
        shown = http.get(f"/v1/holds/{hold['id']}", headers=auth(alice)).json()
    assert confirmed.status_code == 409, confirmed.text
    assert "independent lineage" in confirmed.json()["detail"]
    assert shown["released_at"] is None and shown["active"]


def test_two_people_release_and_the_journal_names_both(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        first = operator_key(server, tenant, ["compliance"], "ana")
        second = operator_key(server, tenant, ["compliance"], "ben")
        hold = _hold(http, first, "litigation")
        asked = _release(http, hold, first)
        released = _release(http, hold, second)
    assert asked.status_code == 202
    assert asked.json()["release_request_expires_at"] is not None
    assert released.status_code == 200, released.text
    actions = [(e["action"], e["api_key_id"]) for e in released.json()["events"]]
    assert actions[-2:] == [("release_requested", first["id"]), ("released", second["id"])]


def test_compliance_and_admin_keys_must_name_an_owner(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        refused = http.post(
            "/v1/api-keys", json={"name": "x", "scopes": ["compliance"]}, headers=tenant.auth()
        )
        fine = http.post(
            "/v1/api-keys", json={"name": "x", "scopes": ["ingest"]}, headers=tenant.auth()
        )
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "owner"
    assert fine.status_code == 201 and fine.json()["owner"] is None


def test_a_release_request_can_be_withdrawn(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        first = create_key(http, tenant, ["compliance"], owner="cas")
        second = create_key(http, tenant, ["compliance"], owner="dee")
        hold = _hold(http, first, "litigation")
        assert _release(http, hold, first).status_code == 202
        withdrawn = http.delete(f"/v1/holds/{hold['id']}/release", headers=auth(second))
        nothing_left = http.delete(f"/v1/holds/{hold['id']}/release", headers=auth(second))
        confirm_after = _release(http, hold, second)
    assert withdrawn.status_code == 200 and withdrawn.json()["release_requested_by"] is None
    assert nothing_left.status_code == 409
    # The request was gone: the second person's call is a new first step.
    assert confirm_after.status_code == 202
    assert confirm_after.json()["release_requested_by"] == second["id"]


def test_a_release_request_lapses_after_seven_days(
    server: ServerThread, tenant: Tenant, database_url: str
) -> None:
    with server.client() as http:
        first = create_key(http, tenant, ["compliance"], owner="eli")
        second = create_key(http, tenant, ["compliance"], owner="fay")
        hold = _hold(http, first, "law_enforcement")
        assert _release(http, hold, first).status_code == 202
        asyncio.run(_age_release_request(database_url, hold["id"], timedelta(days=7, seconds=1)))
        shown = http.get(f"/v1/holds/{hold['id']}", headers=auth(first)).json()
        late = _release(http, hold, second)
    assert shown["release_requested_by"] is None
    assert late.status_code == 202 and late.json()["released_at"] is None


async def _age_release_request(url: str, hold_id: str, age: timedelta) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "UPDATE holds SET release_requested_at = now() - $2::interval WHERE id = $1::uuid",
            hold_id,
            age,
        )
    finally:
        await conn.close()
