"""Red team 22: the subject-before-KEK lock order (keyring.subject_key_for_write takes
the subject FOR SHARE before the KEK when it creates a subject key, 3d0f5ca) and the 503
that `lock_conflict_handler` gives a transaction PostgreSQL aborts.

Finding: the FOR SHARE is now held from before the KEK read and the key's wrap to the
end of the transaction. A writer that creates a subject key and then UPDATEs the subject
in the same transaction (the first write to a subject's new life after an erasure seals
the subject reference under the new identity key: subjects.py `_seal_ref_copy`, then
`set_ref_copy`) upgrades its share lock. Two such uploads to one subject: the second
creates the identity key and reaches its UPDATE while the first holds its FOR SHARE
(between share and insert: reading and opening the KEK, wrapping); the first's insert
then waits for the second's uncommitted key (ON CONFLICT on the same generation's key),
the second for the first's share: a cycle PostgreSQL breaks by aborting one upload, which
the client sees as 503. Before the fix the first held nothing on the subject until its
insert, and the same two uploads both succeeded.

What held: the aborted upload answers problem+json 503 with Retry-After, leaves no
artefact row, and the same request sent again with its Idempotency-Key goes through (the
key was released, not left in flight to answer 409).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest

from tests.api.helpers import access_log, create_key, put_record, upload
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
from vault.services.keyring import KeyRing

server = module_private_server("rt22-lock-order")

REF = "rt22-new-life"


def _two_uploads_to_a_new_life(
    server: ServerThread, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> list[httpx.Response]:
    """An erased subject (its reference copy shredded); upload A paused where it opens
    the KEK for the new identity key (subject FOR SHARE and KEK FOR SHARE held), upload B
    sent and seen waiting for a lock, then A let on. Both carry an Idempotency-Key.
    Returns [A, B] as answered."""
    with server.client() as http:
        key = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        assert put_record(http, key, REF, "a", b'{"a": 1}').status_code in (200, 201)
        status, _ = erase_and_run_worker(
            server, http, privacy, REF, until=("completed",), seconds=6
        )
        assert status == "completed"

    paused, go_on = pause_after_first_call(monkeypatch, KeyRing, "_kek")
    answers: dict[str, httpx.Response] = {}

    def send(name: str) -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            answers[name] = upload(
                http, key, REF, name.encode() * 1024, headers={"Idempotency-Key": f"rt22-{name}"}
            )

    first = threading.Thread(target=send, args=("A",))
    second = threading.Thread(target=send, args=("B",))
    first.start()
    try:
        assert paused.wait(10), "upload A never reached its pause"
        second.start()
        # B waits for a lock (with the fix), or is answered (before it: A held nothing).
        assert until(lambda: lock_waiters(server.database_url) >= 1 or "B" in answers)
    finally:
        go_on.set()
        first.join(30)
        second.join(30)
    return [answers["A"], answers["B"]]


def test_two_uploads_to_an_erased_subjects_new_life_both_succeed(
    server: ServerThread, new_tenant: Callable[[], Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = _two_uploads_to_a_new_life(server, new_tenant(), monkeypatch)
    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]


def test_held_an_upload_aborted_by_a_lock_cycle_answers_503_and_its_retry_succeeds(
    server: ServerThread, new_tenant: Callable[[], Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = new_tenant()
    answers = _two_uploads_to_a_new_life(server, tenant, monkeypatch)
    monkeypatch.undo()
    for name, answer in zip("AB", answers, strict=True):
        if answer.status_code == 201:
            continue
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.headers["retry-after"] == "1"
        # Nothing of it committed: one artefact row, the other upload's.
        assert (
            fetchval(
                server.database_url,
                "SELECT count(*) FROM artefacts WHERE tenant_id = $1",
                tenant.id,
            )
            == 1
        )
        # Sent again as it was, its Idempotency-Key with it: released, not in flight.
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            retried = http.post(
                answer.request.url,
                content=name.encode() * 1024,
                headers=dict(answer.request.headers),
            )
        assert retried.status_code == 201, retried.text
        assert retried.headers.get("idempotent-replayed") is None
    # The access log says what each answer was: no row claims a 201 that was not one.
    with server.client() as http:
        rows = access_log(http, create_key(http, tenant, ["compliance"], owner="rt22 auditor"))
    posted = sorted(
        int(row["status"])
        for row in rows
        if row["method"] == "POST" and str(row["route"]).endswith("/artefacts")
    )
    stored = fetchval(
        server.database_url, "SELECT count(*) FROM artefacts WHERE tenant_id = $1", tenant.id
    )
    assert posted.count(201) == stored, rows
    assert posted.count(503) == sum(a.status_code == 503 for a in answers), rows


def test_held_a_closure_pass_waits_out_an_upload_to_a_new_life_without_a_cycle(
    server: ServerThread, new_tenant: Callable[[], Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The subject the upload shares is one the closure's first listing does not have
    (erased: no live key), so the closure reaches the KEK without it and waits for the
    upload's FOR SHARE there (the upload holds the subject, taken first); the upload goes
    on (its inserts' foreign keys point at the subject and the KEK it already holds,
    never the tenant row the closure holds FOR UPDATE) and commits; the closure's second
    listing destroys the key it made. No cycle: the pass closes the tenant, nothing live
    is left."""
    tenant = new_tenant()
    with server.client() as http:
        key = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        assert put_record(http, key, REF, "a", b'{"a": 1}').status_code in (200, 201)
        status, _ = erase_and_run_worker(
            server, http, privacy, REF, until=("completed",), seconds=6
        )
        assert status == "completed"
        requested = http.post(
            "/v1/tenant/closure", json={"reason": "red team 22"}, headers=tenant.auth()
        )
        assert requested.status_code == 202

    paused, go_on = pause_after_first_call(monkeypatch, KeyRing, "_kek")
    answers: list[httpx.Response] = []
    outcome: list[object] = []

    def send() -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            answers.append(upload(http, key, REF, b"x" * 4096))

    def close() -> None:
        try:
            outcome.append(close_due_tenants(server))
        except Exception as exc:  # what the pass raised is what is looked at
            outcome.append(exc)

    writer, closer = threading.Thread(target=send), threading.Thread(target=close)
    writer.start()
    try:
        assert paused.wait(10), "the upload never reached its pause"
        closer.start()
        assert until(lambda: lock_waiters(server.database_url) >= 1), "closure never waited"
        time.sleep(1.2)  # past deadlock_timeout: a cycle would be found now
    finally:
        go_on.set()
        writer.join(30)
        closer.join(30)
    assert outcome == [1], outcome
    # 201: the upload's completion took the subject before the closure's second listing
    # did (its key then destroyed with the rest); otherwise refused. Never a 5xx.
    assert answers and answers[0].status_code in (201, 401, 404, 410), answers[0].text
    url = server.database_url
    assert fetchval(url, "SELECT status FROM tenants WHERE id = $1", tenant.id) == "closed"
    assert not fetchval(
        url,
        "SELECT count(*) FROM subject_keys WHERE tenant_id = $1 AND wrapped_key IS NOT NULL",
        tenant.id,
    )
