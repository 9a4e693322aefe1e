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
detector aborts one of them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

import vault.services.keyring as keyring_module
from tests.api.helpers import create_key, put_record, upload
from tests.support import ServerThread, Tenant, module_private_server
from vault.runtime import operator_context
from workers.closure import run_due_closures

server = module_private_server("rt21-closure-deadlock")

REF = "rt21-closing"


def _close_due(server: ServerThread) -> int:
    async def run() -> int:
        async with operator_context(server.settings, server.database_url) as ctx:
            return await run_due_closures(
                ctx.db, ctx.keyring, now=datetime.now(UTC) + timedelta(days=61)
            )

    return asyncio.run(run())


def _fetchval(database_url: str, query: str, *args: object) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def _waiting_for_kek_lock(database_url: str, seconds: float = 10) -> bool:
    """Whether the closure's `lock_live_keks` is seen waiting for a lock."""
    deadline = datetime.now(UTC) + timedelta(seconds=seconds)
    while datetime.now(UTC) < deadline:
        waiting = _fetchval(
            database_url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE '%tenant_keks%FOR UPDATE%'",
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

    real_wrap = keyring_module.wrap_key
    in_transaction, go_on = threading.Event(), threading.Event()

    def wrap_then_wait(*args: Any, **kwargs: Any) -> Any:
        wrapped = real_wrap(*args, **kwargs)
        if not in_transaction.is_set():
            in_transaction.set()
            go_on.wait(20)
        return wrapped

    monkeypatch.setattr(keyring_module, "wrap_key", wrap_then_wait)
    responses: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            responses.append(upload(http, key, REF, b"x" * 4096, category="recording"))

    outcome: list[object] = []

    def close() -> None:
        try:
            outcome.append(_close_due(server))
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


_DEADLOCK = (
    "red team 21: an upload's KEK FOR SHARE then subject FOR SHARE against the closure's "
    "subject FOR UPDATE then KEK FOR UPDATE: a lock cycle PostgreSQL breaks by aborting one"
)


@pytest.mark.xfail(strict=True, reason=_DEADLOCK + " (here the closure's whole pass)")
def test_a_closure_pass_catching_an_upload_between_kek_and_subject_does_not_deadlock(
    server: ServerThread, new_tenant: Callable[[], Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = new_tenant()
    _, outcome = _upload_caught_between_kek_and_subject(
        server, tenant, monkeypatch, closure_waits=0
    )
    assert outcome and isinstance(outcome[0], int), outcome


@pytest.mark.xfail(strict=True, reason=_DEADLOCK + " (here the upload: a 500)")
def test_an_upload_caught_by_the_closures_kek_lock_answers_no_500(
    server: ServerThread, new_tenant: Callable[[], Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = new_tenant()
    response, outcome = _upload_caught_between_kek_and_subject(
        server, tenant, monkeypatch, closure_waits=1.5
    )
    assert outcome and isinstance(outcome[0], int), outcome
    assert response.status_code != 500, response.text
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
        _close_due(server)
    url = server.database_url
    assert _fetchval(url, "SELECT status FROM tenants WHERE id = $1", tenant.id) == "closed"
    assert not _fetchval(
        url,
        "SELECT count(*) FROM subject_keys WHERE tenant_id = $1 AND wrapped_key IS NOT NULL",
        tenant.id,
    )
    assert not _fetchval(
        url,
        "SELECT count(*) FROM tenant_keks WHERE tenant_id = $1 AND wrapped_key IS NOT NULL",
        tenant.id,
    )
    assert response.status_code in (201, 409, 410, 503), response.text
