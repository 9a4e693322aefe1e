"""Every erasure instruction is carried out: a held erasure absorbs no later instruction,
a write racing an erasure cannot leave a live key in the erased generation, a cancelled
erasure does not let kept data reach the application, a burst cannot overshoot the rate
brake, and statuses say no more than is true. Jobs run by hand (tests/jobs.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.helpers import auth, create_key, put_record, record_url, subject_url, upload
from tests.jobs import deletion_violations, run_worker_pass
from tests.support import ServerThread, Tenant, make_tenant, problem


@pytest.fixture
def vault(quiet_vault: ServerThread) -> ServerThread:
    return quiet_vault


class Keys:
    def __init__(self, http: httpx.Client, tenant: Tenant) -> None:
        self.app = create_key(http, tenant, ["ingest", "read"])
        self.reader = create_key(http, tenant, ["read"])
        self.privacy = create_key(http, tenant, ["erasure"])
        self.officer = create_key(http, tenant, ["compliance"])
        self.admin = tenant.auth()


def _tenant(vault: ServerThread) -> Tenant:
    return make_tenant(vault.settings, vault.database_url)


def _erase(http: httpx.Client, keys: Keys, ref: str) -> httpx.Response:
    return http.post(subject_url(ref, "erasure"), headers=auth(keys.privacy))


def _erasure(http: httpx.Client, keys: Keys, erasure_id: str) -> dict[str, Any]:
    response = http.get(f"/v1/erasures/{erasure_id}", headers=auth(keys.privacy))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_held_erasure_does_not_absorb_a_later_instruction(vault: ServerThread) -> None:
    tenant = _tenant(vault)
    with vault.client() as http:
        keys = Keys(http, tenant)
        assert put_record(http, keys.app, "bob", "invoice", b'{"eur": 12}', "billing").is_success
        assert put_record(http, keys.app, "bob", "profile", b'{"v": 1}', "account").is_success
        first = _erase(http, keys, "bob")
        run_worker_pass(vault)
        assert _erasure(http, keys, first.json()["id"])["status"] == "held"  # billing kept
        assert put_record(http, keys.app, "bob", "profile2", b'{"v": 2}', "account").is_success
        second = _erase(http, keys, "bob")
        run_worker_pass(vault)
        new_record = http.get(record_url("bob", "profile2"), headers=auth(keys.reader))
        kept = http.get(record_url("bob", "invoice"), headers=auth(keys.officer))
        first_after = _erasure(http, keys, first.json()["id"])
        second_after = _erasure(http, keys, second.json()["id"])
    assert second.status_code == 202, second.text
    assert second.json()["id"] != first.json()["id"]
    assert new_record.status_code in (404, 410), new_record.text
    assert second_after["status"] == "completed"
    assert {s["category"] for s in second_after["shredded"]} >= {"account"}
    assert first_after["status"] == "held" and kept.status_code == 200
    assert deletion_violations(vault) == []


def test_a_repeated_request_while_scheduled_returns_it_and_covers_data_written_since(
    vault: ServerThread,
) -> None:
    tenant = _tenant(vault)
    with vault.client() as http:
        keys = Keys(http, tenant)
        settings = {"erasure_grace_hours": 24}
        assert http.patch("/v1/tenant/settings", json=settings, headers=keys.admin).is_success
        assert put_record(http, keys.app, "cy", "a", b"1").is_success
        first = _erase(http, keys, "cy")
        assert put_record(http, keys.app, "cy", "b", b"2").is_success  # after the request
        again = _erase(http, keys, "cy")
        unchanged = _erase(http, keys, "cy")
        run_worker_pass(vault, days=2)
        later = http.get(record_url("cy", "b"), headers=auth(keys.officer))
        done = _erasure(http, keys, first.json()["id"])
    assert (first.status_code, again.status_code, unchanged.status_code) == (202, 200, 200)
    assert again.json()["id"] == unchanged.json()["id"] == first.json()["id"]
    assert done["status"] == "completed"
    assert later.status_code in (404, 410), "the repeated instruction covered data written since"


def test_an_upload_racing_an_erasure_is_covered_by_it(vault: ServerThread) -> None:
    """The upload holds the subject while it creates the subject's key, and waits there for
    the tenant's KEK (held in EXCLUSIVE mode here) when the erasure is requested. Writers
    take the subject before the KEK, as the closure does (red team 21), so the erasure
    request waits for the upload's first transaction instead of moving the generation under
    it; then it covers what the upload wrote. Once the erasure has completed, nothing of the
    upload can be read and the deletion check finds nothing."""
    tenant = _tenant(vault)
    with vault.client() as http:
        keys = Keys(http, tenant)
        assert put_record(http, keys.app, "ray", "profile", b'{"v": 1}').is_success
        answer: dict[str, httpx.Response] = {}
        lock_held, release = threading.Event(), threading.Event()
        locker = threading.Thread(
            target=lambda: asyncio.run(_hold_kek_table(vault.database_url, lock_held, release))
        )
        locker.start()
        assert lock_held.wait(10)

        def send() -> None:
            with vault.client() as racing:
                answer["upload"] = upload(racing, keys.app, "ray", b"late call", "recording")

        def erase() -> None:
            with vault.client() as racing:
                answer["erasure"] = _erase(racing, keys, "ray")

        uploader, eraser = threading.Thread(target=send), threading.Thread(target=erase)
        uploader.start()
        # The upload holds the subject and waits for the KEK.
        _wait_for_lock_waiters(vault.database_url, "relation = 'tenant_keks'::regclass", 1)
        eraser.start()
        # The erasure request waits for the upload's transaction (the subject's row).
        _wait_for_lock_waiters(vault.database_url, "locktype IN ('transactionid', 'tuple')", 1)
        release.set()
        uploader.join(30)
        eraser.join(30)
        locker.join(10)
        assert answer["erasure"].status_code == 202, answer["erasure"].text
        run_worker_pass(vault)
        completed = _erasure(http, keys, answer["erasure"].json()["id"])
        uploaded = answer["upload"]
        violations = deletion_violations(vault)
        if uploaded.status_code == 201:
            content = subject_url("ray", "artefacts", uploaded.json()["id"], "content")
            gone = http.get(content, headers=auth(keys.officer))
            assert gone.status_code in (404, 410), gone.status_code
    assert completed["status"] == "completed"
    assert uploaded.status_code in (201, 404, 409, 410), uploaded.text
    assert "recording" in {s["category"] for s in completed["shredded"]}
    assert violations == []


def _wait_for_lock_waiters(url: str, which: str, count: int) -> None:
    """Until `count` sessions wait for a lock matching `which` (a pg_locks condition):
    the race window is open, without guessing a sleep."""

    async def waiting() -> int:
        conn = await asyncpg.connect(url)
        try:
            return int(
                await conn.fetchval(
                    f"SELECT count(*) FROM pg_locks WHERE NOT granted AND ({which})"
                )
            )
        finally:
            await conn.close()

    deadline = time.monotonic() + 20
    while asyncio.run(waiting()) < count:
        assert time.monotonic() < deadline, f"fewer than {count} sessions waited for {which}"
        time.sleep(0.02)


async def _hold_kek_table(url: str, held: threading.Event, release: threading.Event) -> None:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE tenant_keks IN EXCLUSIVE MODE")
            held.set()
            while not release.is_set():
                await asyncio.sleep(0.05)
    finally:
        await conn.close()


def test_kept_data_stays_compliance_only_after_a_cancelled_erasure(vault: ServerThread) -> None:
    tenant = _tenant(vault)
    with vault.client() as http:
        keys = Keys(http, tenant)
        assert put_record(http, keys.app, "ann", "profile", b'{"v": 1}').is_success
        grace = {"erasure_grace_hours": 24}
        assert http.patch("/v1/tenant/settings", json=grace, headers=keys.admin).is_success
        cancelled = _erase(http, keys, "ann")
        cancel = http.post(
            f"/v1/erasures/{cancelled.json()['id']}/cancel", headers=auth(keys.privacy)
        )
        hold = http.post(
            "/v1/holds",
            json={"subject_ref": "ann", "reason": "fraud_investigation", "reference": "F-1"},
            headers=auth(keys.officer),
        )
        no_grace = {"erasure_grace_hours": 0}
        assert http.patch("/v1/tenant/settings", json=no_grace, headers=keys.admin).is_success
        second = _erase(http, keys, "ann")
        run_worker_pass(vault)
        by_app = http.get(record_url("ann", "profile"), headers=auth(keys.reader))
        by_officer = http.get(record_url("ann", "profile"), headers=auth(keys.officer))
        shown = _erasure(http, keys, second.json()["id"])
    assert (cancel.status_code, hold.status_code, second.status_code) == (200, 201, 202)
    assert shown["status"] == "held"
    assert by_app.status_code == 403 and problem(by_app)["type"].endswith("/restricted")
    assert by_officer.status_code == 200 and by_officer.json() == {"v": 1}


def test_a_held_erasure_says_only_what_is_true(vault: ServerThread) -> None:
    """Kept only by statutory retention: held, retained names the category and until
    when, held lists no hold, and completed_at stays null until it completes."""
    tenant = _tenant(vault)
    with vault.client() as http:
        keys = Keys(http, tenant)
        assert put_record(http, keys.app, "eve", "invoice", b"{}", "billing").is_success
        erasure = _erase(http, keys, "eve")
        run_worker_pass(vault)
        held = _erasure(http, keys, erasure.json()["id"])
        run_worker_pass(vault, days=7 * 365 + 3)
        completed = _erasure(http, keys, erasure.json()["id"])
    assert held["status"] == "held" and held["completed_at"] is None
    assert held["held"] == [] and [r["category"] for r in held["retained"]] == ["billing"]
    assert held["shredded_at"] is not None
    assert completed["status"] == "completed" and completed["completed_at"] is not None


def test_a_concurrent_burst_cannot_overshoot_the_rate_brake(vault: ServerThread) -> None:
    """Inserting erasures is held up (SHARE lock on the table) after each request has
    counted the last hour's: every request then sees the same count unless the count
    and the insert are serialised."""
    tenant = _tenant(vault)
    limit, burst = 3, 8
    with vault.client() as http:
        keys = Keys(http, tenant)
        brake = {"erasure_rate_limit_per_hour": limit}
        assert http.patch("/v1/tenant/settings", json=brake, headers=keys.admin).is_success
        held, release = threading.Event(), threading.Event()
        locker = threading.Thread(
            target=lambda: asyncio.run(_hold_erasures_table(vault.database_url, held, release))
        )
        locker.start()
        assert held.wait(10)
        answers: list[httpx.Response] = []

        def request(n: int) -> None:
            with vault.client() as own:
                answers.append(_erase(own, keys, f"burst-{n}"))

        senders = [threading.Thread(target=request, args=(n,)) for n in range(burst)]
        for sender in senders:
            sender.start()
        # Every request waits: to insert (past its count), or for its turn to count.
        _wait_for_lock_waiters(
            vault.database_url,
            "relation = 'erasures'::regclass OR locktype = 'advisory'",
            burst,
        )
        release.set()
        for sender in senders:
            sender.join(30)
        locker.join(10)
        listed = http.get("/v1/erasures?limit=100", headers=auth(keys.privacy)).json()["items"]
    assert [a.status_code for a in answers] == [202] * burst
    assert sum(1 for e in listed if not e["rate_braked"]) == limit


def test_concurrent_requests_for_a_subject_never_seen_make_one_erasure(
    vault: ServerThread,
) -> None:
    """A reference never seen has no subject row to queue on: the requests race to insert
    the one scheduled erasure (erasures_one_scheduled), the losers start again and answer
    with the winner's instruction."""
    tenant = _tenant(vault)
    burst = 6
    with vault.client() as http:
        keys = Keys(http, tenant)
        answers: list[httpx.Response] = []
        start = threading.Barrier(burst)

        def request() -> None:
            with vault.client() as own:
                start.wait(10)
                answers.append(_erase(own, keys, "never-seen"))

        senders = [threading.Thread(target=request) for _ in range(burst)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(30)
        listed = http.get(
            "/v1/erasures", params={"subject_ref": "never-seen"}, headers=auth(keys.privacy)
        ).json()["items"]
    assert sorted(a.status_code for a in answers) == [200] * (burst - 1) + [202]
    assert {a.json()["id"] for a in answers} == {listed[0]["id"]}
    assert len(listed) == 1


def test_a_request_follows_settings_changed_since_the_last_one(vault: ServerThread) -> None:
    """A request decides on the settings its process read last; its statement compares
    them with the tenant's and decides again on the new ones (dv_erasure_request)."""
    tenant = _tenant(vault)
    with vault.client() as http:
        keys = Keys(http, tenant)
        first = _erase(http, keys, "settings-1").json()  # the defaults: due at once
        grace = {"erasure_grace_hours": 48}
        assert http.patch("/v1/tenant/settings", json=grace, headers=keys.admin).is_success
        second = _erase(http, keys, "settings-2").json()
        brake = {"erasure_rate_limit_per_hour": 2}
        assert http.patch("/v1/tenant/settings", json=brake, headers=keys.admin).is_success
        third = _erase(http, keys, "settings-3").json()
        third_read = _erasure(http, keys, third["id"])
    assert first["not_before"] == first["requested_at"]
    hours = (_at(second["not_before"]) - _at(second["requested_at"])).total_seconds() / 3600
    assert hours == 48
    # Two erasures in the last hour already: the third is braked, 48 h still the later.
    assert third_read["rate_braked"] is True
    hours = (_at(third["not_before"]) - _at(third["requested_at"])).total_seconds() / 3600
    assert hours == 48


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def _hold_erasures_table(url: str, held: threading.Event, release: threading.Event) -> None:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE erasures IN SHARE MODE")
            held.set()
            while not release.is_set():
                await asyncio.sleep(0.05)
    finally:
        await conn.close()


def test_the_database_refuses_a_key_for_an_older_generation(vault: ServerThread) -> None:
    tenant = _tenant(vault)
    with vault.client() as http:
        keys = Keys(http, tenant)
        assert put_record(http, keys.app, "old", "profile", b"{}").is_success
        assert _erase(http, keys, "old").status_code == 202

    async def plant() -> str:
        conn = await asyncpg.connect(vault.database_url)
        try:
            subject = await conn.fetchrow(
                "SELECT id, generation FROM subjects WHERE tenant_id = $1", tenant.id
            )
            assert subject is not None
            kek = await conn.fetchval(
                "SELECT max(version) FROM tenant_keks WHERE tenant_id = $1", tenant.id
            )
            try:
                await conn.execute(
                    "INSERT INTO subject_keys (tenant_id, id, subject_id, category, generation,"
                    " kek_version, wrapped_key) VALUES ($1, gen_random_uuid(), $2, 'support',"
                    " $3, $4, '\\x00')",
                    tenant.id, subject["id"], subject["generation"] - 1, kek,
                )  # fmt: skip
            except asyncpg.PostgresError as exc:
                return str(exc.sqlstate)
            return "accepted"
        finally:
            await conn.close()

    assert asyncio.run(plant()) == "DVG01"
