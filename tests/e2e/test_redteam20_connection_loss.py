"""Red team 20: the database connections cut under a running vault (every backend of its
database terminated by the server, as a failover or an administrator's
pg_terminate_backend does), requests about a subject arriving at once.

Held: the failed answers are problem+json, and neither they nor the vault's log
(asyncpg's own loggers included: its pool logs a traceback when it cannot restore its
connection floor, with connection errors only) carry the subject reference, the record's
value or the caller's secret.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from tests.api.helpers import auth, data_keys, put_record, subject_url
from tests.support import ServerThread, make_tenant, terminate_backends


@pytest.fixture(scope="module")
def server(own_vault: ServerThread) -> Iterator[ServerThread]:
    yield own_vault


def test_connections_cut_under_requests_leave_no_canary_in_answers_or_the_log(
    server: ServerThread,
    pg_admin_url: str,
    vault_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tag = uuid.uuid4().hex[:10]
    ref, value = f"rt20lossref{tag}", f"rt20lossvalue{tag}"
    tenant = make_tenant(server.settings, server.database_url)
    with server.client() as http:
        keys = data_keys(http, tenant)
        body = json.dumps({"v": value}).encode()
        assert put_record(http, keys.ingest, ref, "email", body).status_code == 201
        # Backends terminated over and over while requests run: some are cut in the
        # middle of a statement, the rest find their pooled connection gone.
        stop = threading.Event()

        def cut_connections() -> None:
            while not stop.is_set():
                terminate_backends(pg_admin_url, server.database_url)
                time.sleep(0.01)

        cutter = threading.Thread(target=cut_connections)
        cutter.start()
        try:
            answers = []
            for _ in range(10):
                answers += [
                    http.get(subject_url(ref, "records", "email"), headers=auth(keys.read)),
                    put_record(http, keys.ingest, ref, "phone", body),
                    http.get(subject_url(ref), headers=auth(keys.read)),
                ]
        finally:
            stop.set()
            cutter.join()
        # And once more, after the pool has had its chance to reconnect.
        deadline = time.monotonic() + 10
        while True:
            last = http.get(subject_url(ref, "records", "email"), headers=auth(keys.read))
            if last.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        answers.append(last)
    captured = capsys.readouterr()
    text = captured.out + captured.err
    for answer in answers:
        # A 500 came in about one run of four: asyncpg's InternalClientError ("cannot
        # switch to state 11; another operation (2) is in progress") from a connection
        # cut in the middle of an operation. It is now 503 (the test below makes it
        # happen every time). Here only what the answer and the log carry is judged.
        assert answer.status_code in (200, 201, 503), answer.text
        if answer.status_code >= 500:
            assert answer.headers["content-type"].startswith("application/problem+json")
        if answer.status_code == 503:
            assert answer.headers["retry-after"].isdigit()
    assert answers[-1].status_code == 200
    for planted in (ref, value, keys.read["secret"], keys.ingest["secret"]):
        assert planted not in text
        # An answer that succeeded on a fresh connection carries its data, as it should.
        assert all(planted not in a.text for a in answers if a.status_code >= 500)


def test_a_connection_asyncpg_left_broken_answers_503_and_is_not_reused(
    server: ServerThread, vault_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the test above meets in about one run of four, made to happen every time: the
    error asyncpg raised there (its message as it was), from a request's statement on its
    pooled connection. Its cause: a backend terminated in the middle of an operation
    leaves asyncpg's protocol in a state it cannot go on from (asyncpg issue 1069), and
    the pool would hand that connection to the next request. The database went away
    under the request: 503 with Retry-After (DESIGN.md "Failure behaviour"), not 500; the
    connection is closed, not reused; the log says why."""
    tenant = make_tenant(server.settings, server.database_url)
    with server.client() as http:
        keys = data_keys(http, tenant)
        ref = f"rt20-cut-{uuid.uuid4().hex[:8]}"
        assert put_record(http, keys.ingest, ref, "email", b'{"v": 1}').status_code == 201
        broken: list[asyncpg.Connection] = []
        real_fetch = asyncpg.Connection.fetch

        async def fetch_once_broken(self: asyncpg.Connection, query: str, *args: Any,
                                    **kwargs: Any) -> Any:  # fmt: skip
            if not broken and "dv_record_read" in query:
                broken.append(self)
                raise asyncpg.InternalClientError(
                    "cannot switch to state 11; another operation (2) is in progress"
                )
            return await real_fetch(self, query, *args, **kwargs)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(asyncpg.Connection, "fetch", fetch_once_broken)
            answer = http.get(subject_url(ref, "records", "email"), headers=auth(keys.read))
            after = http.get(subject_url(ref, "records", "email"), headers=auth(keys.read))
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.headers["retry-after"].isdigit()
    assert broken and broken[0].is_closed()  # not back in the pool
    assert after.status_code == 200, after.text
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "{" in line]
    assert any(
        line.get("event") == "database_connection_broken" and "state 11" in line["error"]
        for line in logged
    ), logged
