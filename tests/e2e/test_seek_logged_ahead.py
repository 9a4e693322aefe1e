"""A seek's access-log row commits while its range is opened (issue 19, seventh round).

A range read answered in one message starts its row's commit once the read is decided
(found, readable, its data key held) and before its keys are unwrapped, so that the
commit runs in PostgreSQL while the vault decrypts; the answer still waits for it. These
tests hold the rules that stay with the window widened on purpose (tests/support.py
`SlowedQuery`: the access-log commit paused): no byte before the row is durable; a read
that fails after its row was started gets a second row saying what it was; the read
holds its key until its answer has left, so an erasure during the commit completes only
after; a revoked key is refused at once; no data key stays in memory after the read.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest

from tests.api.helpers import (
    artefact_url,
    auth,
    create_key,
    subject_url,
    uploaded,
    wait_for,
)
from tests.e2e.seeks import (
    FIXED_HEADER,
    MIB,
    PAUSE_SECONDS,
    SEEK,
    blob_file,
    connect,
    read_all,
    rows_of,
    seek_request,
    slowed_holding_commit,
)
from tests.e2e.stalled_clients import erasure_completes
from tests.support import (
    ServerThread,
    SlowedQuery,
    Tenant,
    data_keys_in_memory,
    make_tenant,
    module_private_server,
    transfer_holds,
)

RECHECK = 0.2
SIZE = 3 * MIB


vault = module_private_server("seek-logged-ahead", transfer_recheck_seconds=RECHECK)


@pytest.fixture
def tenant(vault: ServerThread) -> Tenant:
    return make_tenant(vault.settings, vault.database_url)


@pytest.fixture
def slowed_commit(monkeypatch: pytest.MonkeyPatch) -> SlowedQuery:
    return slowed_holding_commit(monkeypatch)


def test_no_byte_of_a_seek_leaves_before_its_row_is_committed(
    vault: ServerThread, tenant: Tenant, slowed_commit: SlowedQuery
) -> None:
    """The row's commit paused for PAUSE_SECONDS: the client gets nothing (not even the
    status line) until it has committed; then exactly the range, and one row, 206 with
    the range's length, which was in the log before the answer arrived."""
    data = os.urandom(SIZE)
    rid = f"ahead-{uuid.uuid4().hex}"
    with vault.client() as http:
        reader = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"])
        artefact = uploaded(http, reader, "ahead", data)
        path = artefact_url("ahead", artefact["id"], "content")
        with connect(vault) as sock:
            slowed_commit.armed.set()
            sock.sendall(seek_request(vault, path, reader["secret"], MIB - 100, rid))
            assert slowed_commit.entered.wait(timeout=10), "the seek's row was never committed"
            sock.settimeout(PAUSE_SECONDS / 2)
            with pytest.raises(TimeoutError):
                sock.recv(1)  # the commit is still paused: nothing has left
            sock.settimeout(15)
            answer = read_all(sock)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 206"), head
        assert body == data[MIB - 100 : MIB - 100 + SEEK]
        rows = rows_of(http, officer, rid)
    assert [(row["status"], row["bytes_out"]) for row in rows] == [(206, SEEK)]
    # Held until the answer left, then let go: no hold, no key kept for the next read.
    assert wait_for(lambda: transfer_holds(vault.database_url, tenant) == 0, timeout=5)
    assert not data_keys_in_memory(tenant)


@pytest.mark.parametrize("flipped", ["header", "segment"])
def test_a_seek_failing_its_integrity_check_after_its_row_gets_a_second_row(
    vault: ServerThread, tenant: Tenant, slowed_commit: SlowedQuery, flipped: str
) -> None:
    """The row (206, the range's length) was started before the range was opened, and
    the range fails its check: the client gets the integrity problem (500) and no byte
    of plaintext, and the log says so in a second row for the request, after the first:
    500 and the problem's bytes. A request's last row states its outcome."""
    data = os.urandom(SIZE)
    rid = f"ahead-tampered-{uuid.uuid4().hex}"
    with vault.client() as http:
        reader = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"])
        artefact = uploaded(http, reader, f"tampered-{flipped}", data)
        path = artefact_url(f"tampered-{flipped}", artefact["id"], "content")
        blob = blob_file(vault, artefact["id"])
        raw = bytearray(blob.read_bytes())
        header = FIXED_HEADER + raw[1]
        raw[header + MIB + 16 + 500 if flipped == "segment" else header - 1] ^= 0x01
        blob.write_bytes(bytes(raw))
        with connect(vault) as sock:
            slowed_commit.armed.set()
            sock.sendall(seek_request(vault, path, reader["secret"], MIB + 100, rid))
            answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 500"), answer[:200]
        assert b"integrity" in answer
        assert data[MIB + 100 : MIB + 164] not in answer
        assert slowed_commit.entered.is_set()  # the first row was started ahead
        rows = rows_of(http, officer, rid)
    problem = answer.partition(b"\r\n\r\n")[2]
    assert [(row["status"], row["bytes_out"]) for row in rows] == [(206, SEEK), (500, len(problem))]


def test_an_erasure_during_a_seeks_commit_completes_only_after_its_answer(
    vault: ServerThread, tenant: Tenant, slowed_commit: SlowedQuery
) -> None:
    """The subject is erased and the worker runs while the seek's row commits (its range
    opened meanwhile): the seek holds its key, so either its answer has left before the
    erasure completes, or it is cut (the watchdog finds the key destroyed) or refused,
    and nothing of the range arrives after. The request's last row says which. After
    it, no hold and no key is left."""
    data = os.urandom(SIZE)
    ref = f"ahead-erased-{uuid.uuid4().hex[:8]}"
    rid = f"ahead-erased-{uuid.uuid4().hex}"
    arrived: list[tuple[bytes, float]] = []
    with vault.client() as http:
        reader = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        officer = create_key(http, tenant, ["compliance"])
        artefact = uploaded(http, reader, ref, data)
        path = artefact_url(ref, artefact["id"], "content")
        with connect(vault) as sock:
            slowed_commit.armed.set()
            sock.sendall(seek_request(vault, path, reader["secret"], 10, rid))
            assert slowed_commit.entered.wait(timeout=10)

            def read() -> None:
                got = b""
                try:
                    while chunk := sock.recv(65536):
                        got += chunk
                        arrived.append((got, time.monotonic()))
                except OSError:
                    pass  # cut: the connection reset

            reader_thread = threading.Thread(target=read)
            reader_thread.start()
            erasure = http.post(subject_url(ref, "erasure"), headers=auth(privacy))
            assert erasure.status_code == 202, erasure.text
            erasure_url = f"/v1/erasures/{erasure.json()['id']}"
            assert erasure_completes(vault, http, erasure_url, privacy, timeout=20)
            completed_at = time.monotonic()
            reader_thread.join(timeout=15)
        wanted = data[10 : 10 + SEEK]
        delivered = [at for got, at in arrived if wanted in got]
        assert all(at <= completed_at for at in delivered), "range arrived after the completion"
        # Cut or refused: its row says so once the row started ahead has been awaited
        # (committed, or refused for the destroyed key it confirms), after it.
        assert delivered or wait_for(
            lambda: any(row["status"] != 206 for row in rows_of(http, officer, rid)), timeout=10
        )
        rows = rows_of(http, officer, rid)
    if delivered:
        assert rows[-1]["status"] == 206, rows
    else:
        assert rows[-1]["status"] != 206, rows
    assert wait_for(lambda: transfer_holds(vault.database_url, tenant) == 0, timeout=5)
    assert not data_keys_in_memory(tenant)


def test_a_seek_cut_while_its_row_commits_gets_its_cut_row_after_it(
    vault: ServerThread, tenant: Tenant, slowed_commit: SlowedQuery
) -> None:
    """The API key revoked while the seek's row (206) commits: the watchdog cuts the
    seek (its request cancelled where it waits, on that commit), the connection is
    reset before any byte, and the cut's row (401, 0 bytes) is written only once the
    first has committed, so it comes after it: the request's last row is the cut."""
    data = os.urandom(SIZE)
    rid = f"ahead-cut-{uuid.uuid4().hex}"
    with vault.client() as http:
        reader = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"])
        artefact = uploaded(http, reader, "ahead-cut", data)
        path = artefact_url("ahead-cut", artefact["id"], "content")
        with connect(vault) as sock:
            slowed_commit.armed.set()
            sock.sendall(seek_request(vault, path, reader["secret"], 0, rid))
            assert slowed_commit.entered.wait(timeout=10)
            revoked = http.delete(f"/v1/api-keys/{reader['id']}", headers=tenant.auth())
            assert revoked.status_code == 204, revoked.text
            got = b""
            try:
                while chunk := sock.recv(65536):
                    got += chunk
            except OSError:
                pass  # reset
        assert data[:64] not in got
        assert not got.startswith(b"HTTP/1.1 206"), got[:200]
        assert wait_for(lambda: len(rows_of(http, officer, rid)) == 2, timeout=10)
        rows = rows_of(http, officer, rid)
    assert [(row["status"], row["bytes_out"]) for row in rows] == [(206, SEEK), (401, 0)]
    assert wait_for(lambda: transfer_holds(vault.database_url, tenant) == 0, timeout=5)
    assert not data_keys_in_memory(tenant)


def test_a_revoked_key_is_refused_at_once_and_logged_once(
    vault: ServerThread, tenant: Tenant
) -> None:
    """The key is checked live in the read's own statement, before anything is logged
    ahead: revoked, the next seek is 401, one row."""
    data = os.urandom(SIZE)
    with vault.client() as http:
        reader = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"])
        artefact = uploaded(http, reader, "revoked", data)
        path = artefact_url("revoked", artefact["id"], "content")
        seek = {**auth(reader), "Range": f"bytes=0-{SEEK - 1}"}
        assert http.get(path, headers=seek).status_code == 206
        revoked = http.delete(f"/v1/api-keys/{reader['id']}", headers=tenant.auth())
        assert revoked.status_code in (200, 204), revoked.text
        rid = f"ahead-revoked-{uuid.uuid4().hex}"
        refused = http.get(path, headers={**seek, "X-Request-Id": rid})
        assert refused.status_code == 401
        rows = rows_of(http, officer, rid)
    assert [(row["status"], row["bytes_out"]) for row in rows] == [(401, len(refused.content))]


@pytest.mark.parametrize(
    "method, range_header, status",
    [("GET", "bytes=99999999-99999999", 416), ("HEAD", "bytes=0-65535", 206),
     ("GET", f"bytes=0-{2 * MIB - 1}", 206)],
    ids=["unsatisfiable", "head", "streamed"],
)  # fmt: skip
def test_answers_not_logged_ahead_have_one_row(
    vault: ServerThread, tenant: Tenant, method: str, range_header: str, status: int
) -> None:
    """A 416, a HEAD and a range streamed (above one message) are logged with their
    answer as before: one row, saying what went out."""
    data = os.urandom(SIZE)
    rid = f"ahead-none-{uuid.uuid4().hex}"
    with vault.client() as http:
        reader = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"])
        artefact = uploaded(http, reader, "not-ahead", data)
        path = artefact_url("not-ahead", artefact["id"], "content")
        answer = http.request(
            method, path, headers={**auth(reader), "Range": range_header, "X-Request-Id": rid}
        )
        assert answer.status_code == status
        rows = rows_of(http, officer, rid)
    assert [(row["status"], row["bytes_out"]) for row in rows] == [(status, len(answer.content))]
