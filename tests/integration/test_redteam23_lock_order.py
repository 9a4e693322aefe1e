"""Red team 23: the subject lock a writer creating a subject key now takes before the
tenant's KEK (keyring.subject_key_for_write: FOR NO KEY UPDATE, then the KEK FOR SHARE),
attacked with a closure pass and an erasure request beside a paused writer.

What held:
- A record write to an erased subject's new life (the locked path: subject FOR UPDATE, the
  identity key, then the record's category key, each under the KEK FOR SHARE), paused
  while it holds the subject and the KEK, against a closure pass: the closure waits at the
  KEK, the write goes on (its inserts' foreign keys name the subject, keys and KEK, never
  the tenant row the closure holds) and commits, the pass closes the tenant with nothing
  live left: no cycle.
- The lock is held only during the upload's first, short transaction: an upload whose body
  stalls (the client sends one chunk and waits) holds no lock on the subject, and an
  erasure request for the subject is answered at once (202). The upload then completes
  (201: its key was made before the request) and the erasure, run, shreds it: nothing of
  it is readable, no data key of the tenant's artefacts is left live.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.api.helpers import auth, create_key, put_record, subject_url, upload
from tests.jobs import close_due_tenants, erase_and_run_worker, run_worker_pass
from tests.support import (
    ServerThread,
    Tenant,
    fetchval,
    lock_waiters,
    module_private_server,
    pause_after_first_call,
    until,
)
from vault.services.keyring import KeyRing

server = module_private_server("rt23-lock-order")

REF = "rt23-new-life"


def _erased_subject(server: ServerThread, tenant: Tenant) -> dict[str, Any]:
    """A subject with a record, erased (completed): its next write is a new life.
    Returns an ingest+read key."""
    with server.client() as http:
        key = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        assert put_record(http, key, REF, "a", b'{"a": 1}').status_code in (200, 201)
        status, _ = erase_and_run_worker(
            server, http, privacy, REF, until=("completed",), seconds=6
        )
        assert status == "completed"
    return key


def test_held_a_closure_pass_waits_out_a_record_write_to_a_new_life_without_a_cycle(
    server: ServerThread, new_tenant: Callable[[], Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = new_tenant()
    key = _erased_subject(server, tenant)
    with server.client() as http:
        requested = http.post(
            "/v1/tenant/closure", json={"reason": "red team 23"}, headers=tenant.auth()
        )
        assert requested.status_code == 202

    paused, go_on = pause_after_first_call(monkeypatch, KeyRing, "_kek")
    answers: list[httpx.Response] = []
    outcome: list[object] = []

    def write() -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            answers.append(put_record(http, key, REF, "b", b'{"b": 2}'))

    def close() -> None:
        try:
            outcome.append(close_due_tenants(server))
        except Exception as exc:  # what the pass raised is what is looked at
            outcome.append(exc)

    writer, closer = threading.Thread(target=write), threading.Thread(target=close)
    writer.start()
    try:
        assert paused.wait(10), "the record write never reached its pause"
        closer.start()
        assert until(lambda: lock_waiters(server.database_url) >= 1), "closure never waited"
        time.sleep(1.2)  # past deadlock_timeout: a cycle would be found now
    finally:
        go_on.set()
        writer.join(30)
        closer.join(30)
    assert outcome == [1], outcome
    assert answers and answers[0].status_code in (200, 201, 401, 404, 410), answers[0].text
    url = server.database_url
    assert fetchval(url, "SELECT status FROM tenants WHERE id = $1", tenant.id) == "closed"
    assert not fetchval(
        url,
        "SELECT count(*) FROM subject_keys WHERE tenant_id = $1 AND wrapped_key IS NOT NULL",
        tenant.id,
    )


def test_held_an_upload_whose_body_stalls_holds_no_erasure_request_back(
    server: ServerThread, new_tenant: Callable[[], Tenant]
) -> None:
    tenant = new_tenant()
    key = _erased_subject(server, tenant)  # the upload creates the new life's keys
    first_sent, release = threading.Event(), threading.Event()

    def stalling_body() -> Iterator[bytes]:
        yield b"x" * 65536
        first_sent.set()
        release.wait(15)
        yield b"y" * 1024

    answers: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            answers.append(upload(http, key, REF, stalling_body()))

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert first_sent.wait(10)
        # The upload's first transaction (subject, KEK, the new keys) has committed.
        assert until(
            lambda: bool(
                fetchval(
                    server.database_url,
                    "SELECT count(*) FROM artefacts WHERE tenant_id = $1",
                    tenant.id,
                )
            )
        )
        with server.client() as http:
            privacy = create_key(http, tenant, ["erasure"])
            started = time.monotonic()
            erasure = http.post(subject_url(REF, "erasure"), headers=auth(privacy), timeout=10)
            took = time.monotonic() - started
        assert erasure.status_code == 202, erasure.text
        assert took < 2, took
        assert lock_waiters(server.database_url) == 0
    finally:
        release.set()
        sender.join(30)
    # Accepted (its key was made before the request: the erasure covers it) or refused
    # as erased; either way the erasure, once run, leaves nothing of it readable.
    assert answers and answers[0].status_code in (201, 410), answers[0].text
    url = f"/v1/erasures/{erasure.json()['id']}"
    with server.client() as http:
        status = ""
        for _ in range(60):
            run_worker_pass(server)
            status = str(http.get(url, headers=auth(privacy)).json()["status"])
            if status == "completed":
                break
            time.sleep(0.1)
        assert status == "completed"
        if answers[0].status_code == 201:
            got = http.get(
                subject_url(REF, f"artefacts/{answers[0].json()['id']}"), headers=auth(key)
            )
            assert got.status_code in (404, 410), got.text
    assert not fetchval(
        server.database_url,
        "SELECT count(*) FROM data_keys d JOIN artefacts a"
        " ON a.tenant_id = d.tenant_id AND a.data_key_id = d.id"
        " WHERE a.tenant_id = $1 AND d.wrapped_key IS NOT NULL",
        tenant.id,
    )


def test_a_hold_queued_behind_a_writer_the_closure_waits_for_answers_no_500(
    server: ServerThread, new_tenant: Callable[[], Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload to an erased subject's new life paused holding the subject and the KEK;
    a closure pass waiting at the KEK (the subject is not in its first listing); a hold on
    that subject queued behind the upload for the subject's row. The upload commits: the
    hold takes the subject and then needs the tenant's row (its foreign key) the closure
    holds FOR UPDATE, while the closure's second listing reaches for the subject (the
    upload's new key). PostgreSQL aborts one of them: the hold must be a 201 or a 503
    with Retry-After (never a 500), the closure a count or a deferral, and whatever
    happened the tenant ends closed with nothing live, or kept by the hold."""
    tenant = new_tenant()
    key = _erased_subject(server, tenant)
    with server.client() as http:
        officer = create_key(http, tenant, ["compliance"], owner="rt23 officer")
        requested = http.post(
            "/v1/tenant/closure", json={"reason": "red team 23"}, headers=tenant.auth()
        )
        assert requested.status_code == 202

    paused, go_on = pause_after_first_call(monkeypatch, KeyRing, "_kek")
    uploaded: list[httpx.Response] = []
    held: list[httpx.Response] = []
    outcome: list[object] = []

    def send() -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            uploaded.append(upload(http, key, REF, b"x" * 4096))

    def place() -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            held.append(
                http.post(
                    "/v1/holds",
                    json={"reason": "litigation", "reference": "RT23", "subject_ref": REF},
                    headers=auth(officer),
                )
            )

    def close() -> None:
        try:
            outcome.append(close_due_tenants(server))
        except Exception as exc:  # what the pass raised is what is looked at
            outcome.append(exc)

    writer = threading.Thread(target=send)
    closer = threading.Thread(target=close)
    placer = threading.Thread(target=place)
    writer.start()
    try:
        assert paused.wait(10), "the upload never reached its pause"
        closer.start()
        assert until(lambda: lock_waiters(server.database_url) >= 1), "closure never waited"
        placer.start()
        assert until(lambda: lock_waiters(server.database_url) >= 2), "hold never waited"
    finally:
        go_on.set()
        writer.join(30)
        closer.join(30)
        placer.join(30)
    monkeypatch.undo()
    assert held and uploaded and outcome
    assert held[0].status_code in (201, 503), held[0].text
    if held[0].status_code == 503:
        assert held[0].headers["content-type"].startswith("application/problem+json")
        assert held[0].headers["retry-after"]
    assert uploaded[0].status_code in (201, 401, 404, 410), uploaded[0].text
    assert isinstance(outcome[0], int), outcome
    if held[0].status_code != 201:
        if outcome[0] == 0:  # deferred by the cycle, or waited: the next pass closes it
            assert close_due_tenants(server) == 1
        url = server.database_url
        assert fetchval(url, "SELECT status FROM tenants WHERE id = $1", tenant.id) == "closed"
        assert not fetchval(
            url,
            "SELECT count(*) FROM subject_keys WHERE tenant_id = $1 AND wrapped_key IS NOT NULL",
            tenant.id,
        )


def test_held_an_erasure_request_waiting_for_a_writer_and_its_replay(
    server: ServerThread, new_tenant: Callable[[], Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload to a new life paused holding the subject (creating its key); an erasure
    request for the subject with an Idempotency-Key waits for it; the same request sent
    again meanwhile is answered without waiting for the subject (in flight: 409, never a
    second erasure) or waits and replays. Once the upload goes on, the first is a 202 and
    the request sent again a replay of it: one erasure."""
    tenant = new_tenant()
    key = _erased_subject(server, tenant)
    with server.client() as http:
        privacy = create_key(http, tenant, ["erasure"])
    paused, go_on = pause_after_first_call(monkeypatch, KeyRing, "_kek")
    answers: dict[str, httpx.Response] = {}
    headers = {**auth(privacy), "Idempotency-Key": "rt23-erase"}

    def send() -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            answers["upload"] = upload(http, key, REF, b"x" * 4096)

    def erase(name: str) -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            answers[name] = http.post(subject_url(REF, "erasure"), headers=headers)

    writer = threading.Thread(target=send)
    first, again = threading.Thread(target=erase, args=("first",)), None
    writer.start()
    try:
        assert paused.wait(10)
        first.start()
        assert until(lambda: lock_waiters(server.database_url) >= 1), "erasure never waited"
        again = threading.Thread(target=erase, args=("again",))
        again.start()
        again.join(3)
    finally:
        go_on.set()
        writer.join(30)
        first.join(30)
        if again is not None:
            again.join(30)
    assert answers["first"].status_code == 202, answers["first"].text
    assert answers["again"].status_code in (202, 409), answers["again"].text
    if answers["again"].status_code == 202:
        assert answers["again"].json()["id"] == answers["first"].json()["id"]
    else:
        assert answers["again"].headers["content-type"].startswith("application/problem+json")
    assert (
        fetchval(
            server.database_url,
            "SELECT count(*) FROM erasures WHERE tenant_id = $1",
            tenant.id,
        )
        == 2  # the one that made the new life, and this one
    )
