"""Red team 21: the closure's KEK lock (workers/closure.py destroy_tenant_keys) against
writers that take the KEK FOR SHARE before the subject's row.

The closure destroys the listed subject keys first (dv_destroy_subject_keys locks each
subject's row FOR UPDATE and keeps it to the commit), then locks the tenant's live KEK
versions FOR UPDATE. Its docstring says writers lock a subject before its KEK. An upload
does not: `find_or_create` without `lock`, then `subject_key_for_write` takes the KEK FOR
SHARE (keys.sql current_kek_for_write) and only then inserts the subject key, whose
trigger (dv_key_in_current_generation) locks the subject's row FOR SHARE. An upload in a
new category of a subject that has a live key in another category, caught by a closure
pass between those two statements, is a lock cycle: closure waits for the KEK (upload's
FOR SHARE), upload waits for the subject (closure's FOR UPDATE). PostgreSQL's deadlock
detector aborts one of them: the closure's whole pass (every later due tenant with it,
retried a minute later) or the upload (a 500).

The closure's second listing also locks subjects it never locked before (keys made while
it waited at the KEK): a hold placed on such a subject, queued behind the writer for the
subject's row, deadlocks with it and answers 500.

What held: whoever is aborted, no live key is left in a closed tenant; a hold that does get
placed keeps the KEK; a first write arriving while the closure commits waits at the KEK and
then answers 404 (problem+json), leaving nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from crypto.keywrap import wrap_key
from tests.api.helpers import auth, create_key, put_record, upload
from tests.jobs import close_due_tenants, erase_and_run_worker
from tests.support import (
    ServerThread,
    Tenant,
    fetchval,
    lock_waiters,
    module_private_server,
    pause_after_first_call,
    until,
)
from vault.services.kek_invalidation import notify_kek_destroyed
from vault.services.keyring import KeyRing

server = module_private_server("rt21-closure-deadlock")

REF = "rt21-closing"


def _waiting_for_kek_lock(database_url: str, seconds: float = 10) -> bool:
    """Whether the closure is seen waiting for a lock: at the KEK (`lock_live_keks`) as
    first found, or, since writers lock the subject before the KEK, at the subject the
    paused upload holds (the upload itself waits on nothing: it is paused in Python)."""
    deadline = datetime.now(UTC) + timedelta(seconds=seconds)
    while datetime.now(UTC) < deadline:
        waiting = fetchval(
            database_url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock'",
        )
        if waiting:
            return True
    return False


def _upload_caught_between_kek_and_subject(
    server: ServerThread, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, *, closure_waits: float
) -> tuple[httpx.Response, list[object]]:
    """A subject with a live key in category `a` (a record), the tenant's closure
    requested; an upload in `recording` (a new subject key) paused just after its KEK
    version was locked FOR SHARE (while it wraps the new key), a closure pass started and
    seen waiting at the KEK, then (`closure_waits` seconds later) the upload let on. The
    detector runs once per wait, deadlock_timeout (1 s) after it began: the upload let on
    at once makes the closure the victim; after 1.5 s, the upload. Returns the upload's response and
    the closure pass's outcome (a count, or the exception it raised)."""
    with server.client() as http:
        key = create_key(http, tenant, ["ingest", "read"])
        assert put_record(http, key, REF, "a", b'{"a": 1}').status_code in (200, 201)
        requested = http.post(
            "/v1/tenant/closure", json={"reason": "red team 21"}, headers=tenant.auth()
        )
        assert requested.status_code == 202

    real_wrap = wrap_key
    in_transaction, go_on = threading.Event(), threading.Event()

    def wrap_then_wait(*args: Any, **kwargs: Any) -> Any:
        wrapped = real_wrap(*args, **kwargs)
        if not in_transaction.is_set():
            in_transaction.set()
            go_on.wait(20)
        return wrapped

    monkeypatch.setattr("vault.services.keyring.wrap_key", wrap_then_wait)
    responses: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            responses.append(upload(http, key, REF, b"x" * 4096, category="recording"))

    outcome: list[object] = []

    def close() -> None:
        try:
            outcome.append(close_due_tenants(server))
        except Exception as exc:  # the pass's failure is what is looked at
            outcome.append(exc)

    writer = threading.Thread(target=send)
    closer = threading.Thread(target=close)
    writer.start()
    try:
        assert in_transaction.wait(10), "the upload never reached its pause"
        closer.start()
        assert _waiting_for_kek_lock(server.database_url), "the closure never waited at the KEK"
        closer.join(closure_waits)
    finally:
        go_on.set()
        writer.join(30)
        closer.join(30)
    assert responses and outcome
    return responses[0], outcome


def test_a_closure_pass_catching_an_upload_between_kek_and_subject_does_not_deadlock(
    server: ServerThread, new_tenant: Callable[[], Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = new_tenant()
    _, outcome = _upload_caught_between_kek_and_subject(
        server, tenant, monkeypatch, closure_waits=0
    )
    assert outcome and isinstance(outcome[0], int), outcome


def test_an_upload_caught_by_the_closures_kek_lock_answers_no_500(
    server: ServerThread, new_tenant: Callable[[], Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = new_tenant()
    response, outcome = _upload_caught_between_kek_and_subject(
        server, tenant, monkeypatch, closure_waits=1.5
    )
    assert outcome and isinstance(outcome[0], int), outcome
    assert response.status_code != 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")


def test_held_an_upload_caught_by_the_closures_kek_lock_leaves_no_live_key(
    server: ServerThread, new_tenant: Callable[[], Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What held whatever the deadlock's victim: the tenant ends closed (this pass or the
    next) with no live subject key, KEK or stored artefact row."""
    tenant = new_tenant()
    response, outcome = _upload_caught_between_kek_and_subject(
        server, tenant, monkeypatch, closure_waits=0
    )
    if not (outcome and isinstance(outcome[0], int)):
        close_due_tenants(server)
    url = server.database_url
    assert fetchval(url, "SELECT status FROM tenants WHERE id = $1", tenant.id) == "closed"
    assert not fetchval(
        url,
        "SELECT count(*) FROM subject_keys WHERE tenant_id = $1 AND wrapped_key IS NOT NULL",
        tenant.id,
    )
    assert not fetchval(
        url,
        "SELECT count(*) FROM tenant_keks WHERE tenant_id = $1 AND wrapped_key IS NOT NULL",
        tenant.id,
    )
    # 401: the closure committed before the upload's completion, which checks its API key
    # live, and a closed tenant's keys stop working.
    assert response.status_code in (201, 401, 409, 410, 503), response.text


def _live(database_url: str, tenant: Tenant) -> tuple[str, int, int]:
    """The tenant's status, live subject keys and live KEK versions."""
    status = fetchval(database_url, "SELECT status FROM tenants WHERE id = $1", tenant.id)
    subject_keys = fetchval(
        database_url,
        "SELECT count(*) FROM subject_keys WHERE tenant_id = $1 AND wrapped_key IS NOT NULL",
        tenant.id,
    )
    keks = fetchval(
        database_url,
        "SELECT count(*) FROM tenant_keks WHERE tenant_id = $1 AND wrapped_key IS NOT NULL",
        tenant.id,
    )
    return str(status), int(subject_keys), int(keks)


def _hold_placed_while_the_closure_waits_at_the_kek(
    server: ServerThread, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> dict[str, int]:
    """A record write to an erased subject (no live key: the closure's first listing has
    nothing of it) paused once it made the subject's new key (subject row FOR UPDATE, KEK
    FOR SHARE); a litigation hold on that subject queued behind the write (its subject
    row lock); a closure pass waiting at the KEK; then the write let on. Returns the
    write's and the hold's statuses."""
    with server.client() as http:
        key = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        compliance = create_key(http, tenant, ["compliance"], owner="rt21 counsel")
        assert put_record(http, key, REF, "a", b'{"a": 1}').status_code in (200, 201)
        status, _ = erase_and_run_worker(
            server, http, privacy, REF, until=("completed",), seconds=6
        )
        assert status == "completed"
        requested = http.post(
            "/v1/tenant/closure", json={"reason": "red team 21"}, headers=tenant.auth()
        )
        assert requested.status_code == 202

    in_transaction, go_on = pause_after_first_call(monkeypatch, KeyRing, "subject_key_for_write")
    answers: dict[str, int] = {}

    def write() -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            answers["write"] = put_record(http, key, REF, "b", b'{"b": 2}').status_code

    def hold() -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            placed = http.post(
                "/v1/holds",
                json={"subject_ref": REF, "reason": "litigation", "reference": "rt21"},
                headers=auth(compliance),
            )
            answers["hold"] = placed.status_code

    def close() -> None:
        # A pass the deadlock aborts is retried by the next (as the worker does).
        with contextlib.suppress(asyncpg.DeadlockDetectedError):
            close_due_tenants(server)

    threads = [threading.Thread(target=write), threading.Thread(target=hold)]
    closer = threading.Thread(target=close)
    threads[0].start()
    try:
        assert in_transaction.wait(10), "the write never reached its pause"
        threads[1].start()
        assert until(lambda: lock_waiters(server.database_url) >= 1), "the hold never queued"
        closer.start()
        assert until(lambda: lock_waiters(server.database_url) >= 2), "closure never waited"
    finally:
        go_on.set()
        for thread in threads:
            thread.join(30)
        closer.join(30)
    return answers


def test_a_hold_placed_while_the_closure_waits_at_the_kek_is_placed_or_answered_503(
    server: ServerThread, new_tenant: Callable[[], Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The closure's second listing locks the subject the hold holds while the hold waits
    for the tenant's row the closure holds (its foreign key): a cycle PostgreSQL breaks
    by aborting one. A hold aborted so is answered 503 with Retry-After (nothing of it
    committed; sent again it is placed, or refused once the tenant is closed), never 500;
    a closure aborted so is done by the next pass (the test below checks the tenant)."""
    answers = _hold_placed_while_the_closure_waits_at_the_kek(server, new_tenant(), monkeypatch)
    assert answers["write"] in (200, 201)
    assert answers["hold"] in (201, 503), answers


def test_held_a_hold_raced_by_the_closure_leaves_the_tenant_consistent(
    server: ServerThread, new_tenant: Callable[[], Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whichever came first: a hold placed keeps the KEK and the key (tenant closing);
    no hold, nothing live (tenant closed). Never closed with a live key, never a live key
    with no KEK to open it."""
    tenant = new_tenant()
    answers = _hold_placed_while_the_closure_waits_at_the_kek(server, tenant, monkeypatch)
    state = _live(server.database_url, tenant)
    if state[0] == "closing" and answers.get("hold") != 201:
        close_due_tenants(server)  # the pass the deadlock aborted, run again
        state = _live(server.database_url, tenant)
    status, subject_keys, keks = state
    if answers.get("hold") == 201 and status == "closing":
        assert subject_keys and keks, state
    else:
        assert (status, subject_keys, keks) == ("closed", 0, 0), (state, answers)


@pytest.mark.parametrize("writer", ["upload", "record"])
def test_held_a_writer_blocked_on_the_kek_while_the_closure_commits_answers_4xx(
    server: ServerThread,
    new_tenant: Callable[[], Tenant],
    monkeypatch: pytest.MonkeyPatch,
    writer: str,
) -> None:
    """A closure pass paused after it destroyed the KEK versions (its FOR UPDATE held);
    a first write to a subject never seen arrives and waits at the KEK (FOR SHARE). Once
    the closure commits the write finds no live KEK: a problem+json 4xx, and nothing of
    it stays (no subject row, no live key, no artefact)."""
    tenant = new_tenant()
    with server.client() as http:
        key = create_key(http, tenant, ["ingest", "read"])
        requested = http.post(
            "/v1/tenant/closure", json={"reason": "red team 21"}, headers=tenant.auth()
        )
        assert requested.status_code == 202

    real_notify = notify_kek_destroyed
    destroyed = threading.Event()

    async def notify_then_wait(*args: Any) -> None:
        await real_notify(*args)
        destroyed.set()
        await asyncio.sleep(1.5)

    monkeypatch.setattr("workers.closure.notify_kek_destroyed", notify_then_wait)
    closer = threading.Thread(target=lambda: close_due_tenants(server))
    closer.start()
    try:
        assert destroyed.wait(10), "the closure never destroyed the KEK"
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            if writer == "upload":
                answer = upload(http, key, "rt21-new", b"y" * 2048, category="recording")
            else:
                answer = put_record(http, key, "rt21-new", "n", b'{"n": 1}')
    finally:
        closer.join(30)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    url = server.database_url
    assert not fetchval(url, "SELECT count(*) FROM subjects WHERE tenant_id = $1", tenant.id)
    assert not fetchval(url, "SELECT count(*) FROM artefacts WHERE tenant_id = $1", tenant.id)
    assert _live(url, tenant) == ("closed", 0, 0)
