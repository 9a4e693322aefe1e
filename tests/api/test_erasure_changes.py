"""Following erasures: `GET /v1/erasures?updated_since=` (API.md "Erasure") answers the
erasures whose status or contents changed at or after that time, oldest change first,
and pages on with a cursor of its own. A held erasure the executor looks at again without
anything changing does not show as changed; one whose holds changed does."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.api.helpers import auth, create_key, parse_time, rfc3339, subject_url, uploaded
from tests.jobs import run_worker_pass
from tests.support import ServerThread, Tenant, make_tenant, problem


@pytest.fixture
def tenant(quiet_vault: ServerThread) -> Tenant:
    return make_tenant(quiet_vault.settings, quiet_vault.database_url)


def _keys(http: httpx.Client, tenant: Tenant) -> dict[str, dict[str, Any]]:
    return {
        "app": create_key(http, tenant, ["ingest", "read"]),
        "privacy": create_key(http, tenant, ["erasure"]),
        "officer": create_key(http, tenant, ["compliance"]),
    }


def _erase(http: httpx.Client, key: dict[str, Any], ref: str) -> dict[str, Any]:
    answer = http.post(subject_url(ref, "erasure"), headers=auth(key))
    assert answer.status_code == 202, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _changed(http: httpx.Client, key: dict[str, Any], since: str, **params: Any) -> dict[str, Any]:
    answer = http.get("/v1/erasures", params={"updated_since": since, **params}, headers=auth(key))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _show(http: httpx.Client, key: dict[str, Any], erasure_id: str) -> dict[str, Any]:
    answer = http.get(f"/v1/erasures/{erasure_id}", headers=auth(key))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_changes_come_oldest_first_and_completion_is_a_change(
    quiet_vault: ServerThread, tenant: Tenant
) -> None:
    start = rfc3339(datetime.now(UTC) - timedelta(seconds=1))
    with quiet_vault.client() as http:
        keys = _keys(http, tenant)
        uploaded(http, keys["app"], "follow-a", b"a recording")
        first = _erase(http, keys["privacy"], "follow-a")
        second = _erase(http, keys["privacy"], "follow-b")  # unknown: nothing to shred
        page = _changed(http, keys["privacy"], start)
        assert [e["id"] for e in page["items"]] == [first["id"], second["id"]]
        assert page["next_cursor"] is None
        assert {e["status"] for e in page["items"]} == {"scheduled"}
        mark = page["items"][-1]["updated_at"]

        run_worker_pass(quiet_vault)

        # Inclusive: the time of the last change seen answers it again, now changed.
        later = _changed(http, keys["privacy"], mark)["items"]
        assert {e["id"] for e in later} == {first["id"], second["id"]}
        assert {e["status"] for e in later} == {"completed"}
        assert all(parse_time(e["updated_at"]) > parse_time(mark) for e in later)
        times = [(parse_time(e["updated_at"]), e["id"]) for e in later]
        assert times == sorted(times)
        # The filters of the newest-first listing apply too.
        only = _changed(http, keys["privacy"], start, subject_ref="follow-a")["items"]
        assert [e["id"] for e in only] == [first["id"]]
        assert _changed(http, keys["privacy"], start, status="scheduled")["items"] == []


def test_changes_page_on_with_their_own_cursor(quiet_vault: ServerThread, tenant: Tenant) -> None:
    start = rfc3339(datetime.now(UTC) - timedelta(seconds=1))
    with quiet_vault.client() as http:
        keys = _keys(http, tenant)
        made = [_erase(http, keys["privacy"], f"page-{n}")["id"] for n in range(3)]
        seen: list[str] = []
        cursor = None
        while True:
            page = _changed(
                http, keys["privacy"], start, limit=1, **({"cursor": cursor} if cursor else {})
            )
            seen += [e["id"] for e in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == made
        # A cursor of one listing is refused by the other, not misread.
        newest_first = http.get("/v1/erasures", params={"limit": 1}, headers=auth(keys["privacy"]))
        other = newest_first.json()["next_cursor"]
        refused = http.get(
            "/v1/erasures", params={"updated_since": start, "cursor": other},
            headers=auth(keys["privacy"]),
        )  # fmt: skip
        assert refused.status_code == 422
        assert problem(refused)["errors"][0]["field"] == "cursor"
        changes = _changed(http, keys["privacy"], start, limit=1)["next_cursor"]
        refused = http.get(
            "/v1/erasures", params={"cursor": changes}, headers=auth(keys["privacy"])
        )
        assert refused.status_code == 422


@pytest.mark.parametrize("since", ["yesterday", "2026-01-01T00:00:00", "2026-13-01T00:00:00Z"])
def test_a_bad_updated_since_is_422_naming_it(
    quiet_vault: ServerThread, tenant: Tenant, since: str
) -> None:
    with quiet_vault.client() as http:
        key = create_key(http, tenant, ["erasure"])
        answer = http.get("/v1/erasures", params={"updated_since": since}, headers=auth(key))
    assert answer.status_code == 422
    assert problem(answer)["errors"][0]["field"] == "updated_since"


def test_a_held_erasure_changes_when_its_holds_do_and_not_otherwise(
    quiet_vault: ServerThread, tenant: Tenant
) -> None:
    with quiet_vault.client() as http:
        keys = _keys(http, tenant)
        ref = f"held-{uuid.uuid4().hex[:6]}"
        uploaded(http, keys["app"], ref, b"a recording")
        holds = []
        for reference in ("case-1", "case-2"):
            placed = http.post(
                "/v1/holds", headers=auth(keys["officer"]),
                json={"subject_ref": ref, "reason": "billing", "reference": reference},
            )  # fmt: skip
            assert placed.status_code == 201, placed.text
            holds.append(placed.json()["id"])
        erasure_id = _erase(http, keys["privacy"], ref)["id"]
        run_worker_pass(quiet_vault)
        held = _show(http, keys["privacy"], erasure_id)
        assert held["status"] == "held"
        assert {"category": "recording", "hold_ids": sorted(holds)} in held["held"]

        run_worker_pass(quiet_vault)  # looked at again: nothing changed
        assert _show(http, keys["privacy"], erasure_id)["updated_at"] == held["updated_at"]
        after = _changed(http, keys["privacy"], held["updated_at"])["items"]
        assert [e["updated_at"] for e in after] == [held["updated_at"]]

        released = http.post(
            f"/v1/holds/{holds[0]}/release", json={"reason": "settled"},
            headers=auth(keys["officer"]),
        )  # fmt: skip
        assert released.status_code == 200, released.text
        run_worker_pass(quiet_vault)
        changed = _show(http, keys["privacy"], erasure_id)
        assert changed["status"] == "held"
        assert {"category": "recording", "hold_ids": [holds[1]]} in changed["held"]
        assert parse_time(changed["updated_at"]) > parse_time(held["updated_at"])


def test_releasing_the_rate_brake_is_a_change(quiet_vault: ServerThread, tenant: Tenant) -> None:
    with quiet_vault.client() as http:
        keys = _keys(http, tenant)
        admin = create_key(http, tenant, ["admin"])
        limited = http.patch(
            "/v1/tenant/settings", json={"erasure_rate_limit_per_hour": 1}, headers=auth(admin)
        )
        assert limited.status_code == 200, limited.text
        _erase(http, keys["privacy"], "brake-1")
        braked = _erase(http, keys["privacy"], "brake-2")
        before = _show(http, keys["privacy"], braked["id"])
        assert before["rate_braked"] is True
        answer = http.post(f"/v1/erasures/{braked['id']}/release-brake", headers=auth(admin))
        assert answer.status_code == 200, answer.text
        assert parse_time(answer.json()["updated_at"]) > parse_time(before["updated_at"])
