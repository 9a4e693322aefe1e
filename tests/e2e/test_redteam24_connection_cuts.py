"""Red team 24: database connections cut under writes (red team 20 cut them under reads
and record writes; this stop made a connection asyncpg leaves unusable answer 503 and
close, vault/db/database.py `_connection`).

Found:
- A creating write whose transaction committed is answered 503 when the connection is
  cut before its Idempotency-Key answer is stored (a second transaction,
  vault/http/idempotency.py `store_answer`). The claim is left unanswered: its retry
  answers 409 "still being processed" for an hour, and after that the request runs again
  (a second hold, disclosure, artefact or key). README "Idempotency-Key": "nothing is
  done twice". Fixed: the store is retried on a fresh connection, and the write's own
  answer goes out even if it never succeeds (`_settle`; the gap left then is in README).
- `Database.connect` (every `datavault` command, the worker, `check deletion`) lets
  asyncpg's InternalClientError through when the cut lands on the pool's first
  statement (`SET ROLE` in `_init_connection`): a traceback instead of "database
  unreachable" (exit 1 with a JSON line under --json).

Held: cut over and over under record writes, uploads, hold placements, erasure requests
and executor passes, nothing answered 500; every acknowledged write reads back exactly;
the vault's log carries no secret, reference or value; the deletion check stays clean.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

import vault.db.database as database_module
from tests.api.helpers import artefact_url, auth, create_key, record_url, subject_url, upload
from tests.jobs import deletion_violations, run_worker_pass
from tests.support import (
    ServerThread,
    SlowedQuery,
    fetchval,
    make_tenant,
    paused_in_database,
    terminate_backends,
    until,
)
from vault.db.database import Database
from vault.errors import Unavailable
from vault.services import idempotency as idempotency_service


@pytest.fixture(scope="module")
def server(own_vault: ServerThread) -> Iterator[ServerThread]:
    yield own_vault


def _terminate(admin_url: str, database_url: str, where: str) -> int:
    """pg_terminate_backend on the vault's backends of its database matching `where`."""
    return terminate_backends(
        admin_url, database_url, f"application_name = 'datavault' AND {where}"
    )


def _holds(database_url: str, tenant_id: uuid.UUID) -> int:
    return int(fetchval(database_url, "SELECT count(*) FROM holds WHERE tenant_id = $1", tenant_id))


def test_a_write_committed_before_a_cut_is_replayed_by_its_idempotency_key(
    server: ServerThread, pg_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: place a hold with an Idempotency-Key; the connection is cut (a failover,
    pg_terminate_backend) after the hold's transaction committed, while the answer is
    being stored. The window is widened on purpose: the store statement sleeps after its
    UPDATE, and that backend is terminated there.

    Observed (red team 24): 503 (the hold is placed); the same request with the same key
    answered 409 "still being processed" (the claim had no answer and was not released);
    once the claim was an hour old it ran again and placed a second hold, which the
    officer who releases "the" hold does not know of (it keeps the subject's data from
    erasure).
    Now: storing the answer is retried on a fresh connection (vault/http/idempotency.py
    `_settle`): the first answer is the hold's own 201, and the retry with the same key
    gets it again (Idempotent-Replayed), also after the claim's hour (the answer is kept
    24 hours). One hold."""
    tenant = make_tenant(server.settings, server.database_url)
    slow = SlowedQuery(
        idempotency_service.Q,
        "store_answer",
        lambda q: (
            f"WITH u AS (\n{q}\nRETURNING 1) SELECT pg_sleep(30) FROM (SELECT count(*) FROM u) c"
        ),
    )
    monkeypatch.setattr(idempotency_service, "Q", slow)
    body = {
        "subject_ref": f"rt24-hold-{uuid.uuid4().hex[:8]}",
        "categories": ["support"],
        "reason": "fraud_investigation",
        "reference": "F-24",
    }
    with server.client() as http:
        officer = create_key(http, tenant, ["compliance"])
        headers = {**auth(officer), "Idempotency-Key": "rt24-place-hold"}
        first: dict[str, httpx.Response] = {}
        slow.armed.set()  # the store's first try only: its retry runs as written
        placing = threading.Thread(
            target=lambda: first.setdefault("r", http.post("/v1/holds", json=body, headers=headers))
        )
        placing.start()
        assert paused_in_database(server.database_url), "the answer's store never paused"
        assert _terminate(pg_admin_url, server.database_url, "wait_event = 'PgSleep'") == 1
        placing.join(30)
        assert first["r"].status_code == 201, first["r"].text
        assert "idempotent-replayed" not in first["r"].headers
        retried = http.post("/v1/holds", json=body, headers=headers)
        # The claim's hour passes (a claim "whose request died" is reclaimed; an
        # answered one is kept for 24 hours).
        fetchval(
            server.database_url,
            "UPDATE idempotency_keys SET created_at = created_at - interval '61 minutes'"
            " WHERE tenant_id = $1",
            tenant.id,
        )
        later = http.post("/v1/holds", json=body, headers=headers)
    holds = _holds(server.database_url, tenant.id)
    assert (retried.status_code, later.status_code, holds) == (201, 201, 1), (
        retried.status_code,
        later.status_code,
        holds,
    )
    for again in (retried, later):
        assert again.headers.get("idempotent-replayed") == "true"
        assert again.json() == first["r"].json()


def test_a_connection_cut_while_the_pool_is_made_is_the_database_unavailable(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: backends terminated in a loop while a `datavault` process connects.

    Observed (a loop of 600 `Database.connect` against a cutter terminating every
    `datavault` backend every 2 ms): 533 connected, 54 Unavailable, 11 raised asyncpg's
    InternalClientError ("cannot switch to state 15; another operation (2) is in
    progress") from `_init_connection`'s SET ROLE, through `Database.connect`, which
    turns only CONNECTION_ERRORS into Unavailable. A CLI command (`check deletion
    --json`) then ends in a traceback, not its JSON error line. Here that error is made
    to happen every time, with the message it had.
    Expected: Unavailable("database unreachable"), as for the other connection errors.
    Fixed (red team 24 finding 5): `Database.connect` counts it among them."""

    async def cut_during_set_role(conn: asyncpg.Connection) -> None:
        raise asyncpg.InternalClientError(
            "cannot switch to state 15; another operation (2) is in progress"
        )

    monkeypatch.setattr(database_module, "_init_connection", cut_during_set_role)

    async def connect() -> BaseException | None:
        try:
            db = await Database.connect(database_url, max_size=1)
        except BaseException as exc:  # what the caller meets, whatever it is
            return exc
        await db.close()
        return None

    raised = asyncio.run(connect())
    assert isinstance(raised, Unavailable), repr(raised)


def _attempt(
    send: Callable[[dict[str, str]], httpx.Response], key: str, seen: Counter[Any]
) -> httpx.Response | None:
    """The request with its Idempotency-Key until it is answered 2xx (or 50 tries):
    what a client that retries 503 and 409 does. Every answer is counted."""
    for _ in range(50):
        try:
            answer = send({"Idempotency-Key": key})
        except httpx.TransportError:
            seen["transport"] += 1
            continue
        seen[answer.status_code] += 1
        if answer.status_code >= 500:
            seen["problem+json"] += answer.headers["content-type"].startswith(
                "application/problem+json"
            )
        if answer.is_success:
            return answer
        if answer.status_code not in (409, 503):
            return None
        time.sleep(0.05)
    return None


def test_held_cuts_under_writes_uploads_holds_and_erasures_answer_no_500_and_lose_nothing(
    server: ServerThread,
    pg_admin_url: str,
    vault_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenant = make_tenant(server.settings, server.database_url)
    with server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"])
        privacy = create_key(http, tenant, ["erasure"])
    seen: Counter[Any] = Counter()
    records: dict[str, bytes] = {}
    artefacts: dict[tuple[str, str], bytes] = {}
    erased: set[str] = set()
    holds: list[str] = []
    erasures: list[str] = []
    stop = threading.Event()

    def one_subject(http: httpx.Client, ref: str, i: int) -> None:
        """A record, an upload, then a hold or an erasure, each retried as a client does."""
        value = json.dumps({"v": f"rt24value{uuid.uuid4().hex}"}).encode()
        data = os.urandom((10, 100_000, 1_200_000)[i % 3])
        answer = _attempt(
            lambda h: http.put(
                record_url(ref, "email"), params={"category": "account"}, content=value,
                headers={**auth(app), "Content-Type": "application/json", **h},
            ),
            f"rec-{ref}", seen,
        )  # fmt: skip
        if answer is not None:
            records[ref] = value
        answer = _attempt(
            lambda h: upload(http, app, ref, data, "support", headers=h), f"art-{ref}", seen
        )
        if answer is not None:
            artefacts[(ref, answer.json()["id"])] = data
        if i % 2:
            answer = _attempt(
                lambda h: http.post(
                    "/v1/holds",
                    json={"subject_ref": ref, "categories": ["support"],
                          "reason": "fraud_investigation", "reference": "F"},
                    headers={**auth(officer), **h},
                ),
                f"hold-{ref}", seen,
            )  # fmt: skip
            if answer is not None:
                holds.append(answer.json()["id"])
        elif i % 4 == 0:
            erased.add(ref)  # its data may be gone, acknowledged or not
            answer = _attempt(
                lambda h: http.post(subject_url(ref, "erasure"), headers={**auth(privacy), **h}),
                f"erase-{ref}",
                seen,
            )
            if answer is not None:
                erasures.append(answer.json()["id"])

    def client(n: int) -> None:
        with server.client() as http:
            for i in range(1000):
                if stop.is_set():
                    return
                one_subject(http, f"rt24cut{n}x{i}x{uuid.uuid4().hex[:6]}", i)

    def executor() -> None:
        while not stop.is_set():
            try:
                run_worker_pass(server)
            except Exception as exc:
                seen[f"pass:{type(exc).__name__}"] += 1
            time.sleep(0.1)

    def cutter() -> None:
        while not stop.is_set():
            seen["cut"] += _terminate(pg_admin_url, server.database_url, "true")
            seen["cut rounds"] += 1
            time.sleep(0.3)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(2)]
    threads += [threading.Thread(target=executor), threading.Thread(target=cutter)]
    for thread in threads:
        thread.start()
    # Driven until 15 rounds of cuts have passed with every kind of write acknowledged at
    # least once (about 5 s), at most 30 s.
    until(
        lambda: seen["cut rounds"] >= 15 and bool(records and artefacts and holds and erasures), 30
    )
    stop.set()
    for thread in threads:
        thread.join(120)
    assert seen["cut"] > 0 and records and artefacts and holds and erasures, seen
    # Nothing but success, the cut's 503 and 409 for a claim left standing (its request
    # still running, or an answer not stored after its retries: README "Idempotency-Key").
    answered = {k for k in seen if isinstance(k, int)}
    assert answered <= {200, 201, 202, 409, 503}, seen
    assert seen["problem+json"] == seen[503], seen
    with server.client() as http:
        deadline = time.monotonic() + 10
        while http.get("/healthz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        for ref, value in records.items():
            got = http.get(record_url(ref, "email"), headers=auth(app))
            if got.status_code in (403, 404, 410) and ref in erased:
                continue
            assert got.status_code == 200 and got.content == value, (got.status_code, ref)
        for (ref, artefact_id), data in artefacts.items():
            got = http.get(artefact_url(ref, artefact_id, "content"), headers=auth(app))
            if got.status_code in (403, 404, 410) and ref in erased:
                continue
            assert got.status_code == 200 and got.content == data, (got.status_code, ref)
    # A read cut after it took its transfer hold holds its key until `held_until` (its
    # process is taken to be cutting it meanwhile): an erasure of that key completes
    # only after. Here the holds lapse at once, as they would in seconds.
    fetchval(
        server.database_url,
        "UPDATE transfer_keys SET held_until = now() - interval '1 second' WHERE tenant_id = $1",
        tenant.id,
    )
    for _ in range(3):
        run_worker_pass(server)
    with server.client() as http:
        # Every acknowledged hold stands; every acknowledged erasure was carried out
        # (completed) or is kept by a hold (held): none was lost or left scheduled.
        for hold_id in holds:
            shown = http.get(f"/v1/holds/{hold_id}", headers=auth(officer))
            assert shown.status_code == 200 and shown.json()["released_at"] is None, hold_id
        statuses = {
            http.get(f"/v1/erasures/{erasure_id}", headers=auth(privacy)).json()["status"]
            for erasure_id in erasures
        }
        assert statuses <= {"completed", "held"}, statuses
    assert deletion_violations(server) == []
    out = capsys.readouterr()
    logged = "\n".join(line for line in (out.out + out.err).splitlines() if "uvicorn" not in line)
    for planted in (app["secret"], officer["secret"], privacy["secret"], "rt24value", "rt24cut"):
        assert planted not in logged, planted
