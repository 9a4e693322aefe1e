"""Red team 17: the two-person release of litigation and law-enforcement holds, and the
other paths that could end such a hold with one key (DESIGN.md, Legal holds: "No other
change may end such a hold sooner without the same confirmation")."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from tests.api.helpers import auth, create_key, operator_key, rfc3339
from tests.support import ServerThread, Tenant


def _hold(http: httpx.Client, key: dict[str, Any], reason: str, **fields: Any) -> dict[str, Any]:
    response = http.post(
        "/v1/holds", json={"reason": reason, "reference": "RT17", **fields}, headers=auth(key)
    )
    assert response.status_code == 201, response.text
    hold: dict[str, Any] = response.json()
    return hold


def _release(http: httpx.Client, hold_id: str, key: dict[str, Any]) -> httpx.Response:
    return http.post(f"/v1/holds/{hold_id}/release", json={"reason": "done"}, headers=auth(key))


def _shown(http: httpx.Client, hold_id: str, key: dict[str, Any]) -> dict[str, Any]:
    response = http.get(f"/v1/holds/{hold_id}", headers=auth(key))
    assert response.status_code == 200, response.text
    shown: dict[str, Any] = response.json()
    return shown


def test_one_owner_spelled_two_ways_is_still_one_person(
    server: ServerThread, tenant: Tenant
) -> None:
    """The operator issues keys with `datavault api-key create --owner NAME`, e.g. a
    replacement after a lost key: an e-mail address typed with other case or a stray
    space names the same person, and must not make a second one."""
    with server.client() as http:
        first = operator_key(server, tenant, ["compliance"], "kim@example.test")
        second = operator_key(server, tenant, ["compliance"], "Kim@Example.test ")
        hold = _hold(http, first, "litigation")
        assert _release(http, hold["id"], first).status_code == 202
        confirmed = _release(http, hold["id"], second)
        shown = _shown(http, hold["id"], first)
    assert confirmed.status_code == 409, confirmed.text
    assert shown["released_at"] is None


def test_an_expired_keys_release_request_cannot_be_confirmed(
    server: ServerThread, tenant: Tenant, database_url: str
) -> None:
    with server.client() as http:
        asker = operator_key(server, tenant, ["compliance"], "rt17-asker")
        confirmer = operator_key(server, tenant, ["compliance"], "rt17-confirmer")
        hold = _hold(http, asker, "law_enforcement")
        assert _release(http, hold["id"], asker).status_code == 202
        asyncio.run(_expire_key(database_url, asker["id"]))
        confirmed = _release(http, hold["id"], confirmer)
        shown = _shown(http, hold["id"], confirmer)
    assert confirmed.status_code == 409, confirmed.text
    assert shown["released_at"] is None


async def _expire_key(url: str, key_id: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1::uuid",
            key_id,
        )
    finally:
        await conn.close()


def test_a_revoked_keys_release_request_cannot_be_confirmed(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        asker = operator_key(server, tenant, ["compliance"], "rt17-revoked-asker")
        confirmer = operator_key(server, tenant, ["compliance"], "rt17-second")
        hold = _hold(http, asker, "litigation")
        assert _release(http, hold["id"], asker).status_code == 202
        revoked = http.delete(f"/v1/api-keys/{asker['id']}", headers=tenant.auth())
        confirmed = _release(http, hold["id"], confirmer)
    assert revoked.status_code == 204
    assert confirmed.status_code == 409 and "revoked" in confirmed.json()["detail"]


def test_a_grandchild_key_cannot_confirm_its_grandparents_request(
    server: ServerThread, tenant: Tenant
) -> None:
    """A creates B, B creates C (other owners named at each step): C is still A."""
    with server.client() as http:
        grand = operator_key(server, tenant, ["admin", "compliance"], "rt17-grand")
        child = http.post(
            "/v1/api-keys",
            json={"name": "b", "scopes": ["admin", "compliance"], "owner": "rt17-child"},
            headers=auth(grand),
        ).json()
        grandchild = http.post(
            "/v1/api-keys",
            json={"name": "c", "scopes": ["compliance"], "owner": "rt17-grandchild"},
            headers=auth(child),
        ).json()
        hold = _hold(http, grand, "litigation")
        assert _release(http, hold["id"], grand).status_code == 202
        by_grandchild = _release(http, hold["id"], grandchild)
        # And the other way round: C asks, A confirms.
        other = _hold(http, grand, "law_enforcement")
        assert _release(http, other["id"], grandchild).status_code == 202
        by_grand = _release(http, other["id"], grand)
    assert by_grandchild.status_code == 409, by_grandchild.text
    assert by_grand.status_code == 409, by_grand.text


def test_two_concurrent_confirmations_release_once(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        asker = operator_key(server, tenant, ["compliance"], "rt17-c-asker")
        second = operator_key(server, tenant, ["compliance"], "rt17-c-second")
        third = operator_key(server, tenant, ["compliance"], "rt17-c-third")
        hold = _hold(http, asker, "litigation")
        assert _release(http, hold["id"], asker).status_code == 202
    answers: list[int] = []
    start = threading.Barrier(2)

    def confirm(key: dict[str, Any]) -> None:
        with server.client() as own:
            start.wait()
            answers.append(_release(own, hold["id"], key).status_code)

    threads = [threading.Thread(target=confirm, args=(k,)) for k in (second, third)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    with server.client() as http:
        shown = _shown(http, hold["id"], asker)
    assert sorted(answers) == [200, 409]
    assert [e["action"] for e in shown["events"]].count("released") == 1


def test_a_lapsed_or_withdrawn_request_is_not_confirmed(
    server: ServerThread, tenant: Tenant, database_url: str
) -> None:
    with server.client() as http:
        asker = operator_key(server, tenant, ["compliance"], "rt17-l-asker")
        second = operator_key(server, tenant, ["compliance"], "rt17-l-second")
        lapsed = _hold(http, asker, "litigation")
        assert _release(http, lapsed["id"], asker).status_code == 202
        asyncio.run(_age_request(database_url, lapsed["id"], timedelta(days=7)))
        after_lapse = _release(http, lapsed["id"], second)
        withdrawn = _hold(http, asker, "law_enforcement")
        assert _release(http, withdrawn["id"], asker).status_code == 202
        assert http.delete(
            f"/v1/holds/{withdrawn['id']}/release", headers=auth(asker)
        ).status_code == 200  # fmt: skip
        after_withdrawal = _release(http, withdrawn["id"], second)
        shown = [_shown(http, h["id"], asker) for h in (lapsed, withdrawn)]
    # Each later call is a new first step (202), never a release.
    assert after_lapse.status_code == 202 and after_withdrawal.status_code == 202
    assert all(h["released_at"] is None for h in shown)


async def _age_request(url: str, hold_id: str, age: timedelta) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "UPDATE holds SET release_requested_at = now() - $2::interval WHERE id = $1::uuid",
            hold_id,
            age,
        )
    finally:
        await conn.close()


def test_an_amendment_cannot_narrow_rescope_or_rename_a_hold(
    server: ServerThread, tenant: Tenant
) -> None:
    """PATCH takes expires_at and note only; scope, categories and reason changes (a
    narrowed hold is a partly released one; `billing` releases with one key) are refused
    or ignored, never applied. PUT and DELETE on a hold are not routes."""
    with server.client() as http:
        officer = create_key(http, tenant, ["compliance"])
        hold = _hold(http, officer, "litigation", subject_ref="rt17-narrow")
        url = f"/v1/holds/{hold['id']}"
        attempts = [
            {"categories": ["billing"]},
            {"subject_ref": "someone-else"},
            {"reason": "billing"},
            {"released_at": rfc3339(datetime.now(UTC))},
            {"categories": ["billing"], "note": "narrowed"},
        ]
        answers = [http.patch(url, json=body, headers=auth(officer)) for body in attempts]
        put = http.put(url, json={**hold, "categories": ["billing"]}, headers=auth(officer))
        delete = http.delete(url, headers=auth(officer))
        shown = _shown(http, hold["id"], officer)
    for body, answer in zip(attempts, answers, strict=True):
        assert answer.status_code in (200, 422), (body, answer.status_code, answer.text)
        assert answer.headers["content-type"].startswith(
            "application/json" if answer.status_code == 200 else "application/problem+json"
        )
    assert put.status_code == 405 and delete.status_code == 405
    assert shown["categories"] is None and shown["reason"] == "litigation"
    assert shown["subject_ref_hash"] == hold["subject_ref_hash"]
    assert shown["released_at"] is None and shown["expires_at"] is None


def test_an_expiry_cannot_be_brought_forward_even_by_a_hair(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        officer = create_key(http, tenant, ["compliance"])
        until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
        hold = _hold(http, officer, "litigation", expires_at=rfc3339(until))
        url = f"/v1/holds/{hold['id']}"
        a_second_sooner = http.patch(
            url, json={"expires_at": rfc3339(until - timedelta(seconds=1))}, headers=auth(officer)
        )
        other_offset = http.patch(
            url,
            json={"expires_at": (until - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+02:00")},
            headers=auth(officer),
        )
        shown = _shown(http, hold["id"], officer)
    assert a_second_sooner.status_code == 422
    # 23:00 +02:00 of the day before is 21:00Z: sooner, whatever the offset's spelling.
    assert other_offset.status_code == 422, other_offset.text
    assert shown["expires_at"] == rfc3339(until)


def test_an_idempotent_replay_of_a_release_request_is_not_a_second_step(
    server: ServerThread, tenant: Tenant
) -> None:
    """The first officer's request, replayed with its Idempotency-Key after a withdrawal,
    must not count as a confirmation (or bring a withdrawn request back as confirmable
    by someone else)."""
    with server.client() as http:
        asker = operator_key(server, tenant, ["compliance"], "rt17-i-asker")
        hold = _hold(http, asker, "litigation")
        headers = {**auth(asker), "Idempotency-Key": str(uuid.uuid4())}
        url = f"/v1/holds/{hold['id']}/release"
        first = http.post(url, json={"reason": "done"}, headers=headers)
        replay = http.post(url, json={"reason": "done"}, headers=headers)
        shown = _shown(http, hold["id"], asker)
    assert first.status_code == 202
    assert replay.status_code in (202, 409), replay.text
    assert shown["released_at"] is None
    assert [e["action"] for e in shown["events"]].count("released") == 0
