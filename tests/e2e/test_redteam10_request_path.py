"""Red team 10: this round's request path, attacked on a running vault over raw sockets.

- An answer's head waits for its body's first write (vault/http/edge_limits.py
  `_HeadJoinsBody`): pipelined requests of every kind (a record's value, a HEAD, a seek,
  a problem, a 204) on one keep-alive connection each get exactly one head, in order,
  with their own body and nothing of another's; a `100 Continue` goes out once, before
  the answer's head.
- A transfer's watchdog starts by a timer when its first check is due
  (vault/http/transfers.py `_Watch`): a stalled download that follows a finished
  transfer on the same keep-alive connection is still cut once its API key is revoked,
  and a download whose client went away releases its hold and its key.

These held; they are kept as regression tests. The vault confirms every RECHECK seconds
(production: 10 s), so each test takes seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import urllib.parse
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.api.helpers import (
    access_log,
    artefact_url,
    create_key,
    put_record,
    record_url,
    subject_url,
    uploaded,
    wait_for,
)
from tests.support import (
    ServerThread,
    Tenant,
    data_keys_in_memory,
    make_tenant,
    module_private_server,
    private_server,
    transfer_holds,
)
from vault.blobs.filesystem import READ_THREAD_NAME
from vault.runtime import operator_context

MIB = 1024 * 1024
SIZE = 16 * MIB  # more than the socket buffers hold for a client that stopped reading
RECHECK = 0.2
CUT_WITHIN = 5.0


vault = module_private_server("rt10-request-path", transfer_recheck_seconds=RECHECK)


@pytest.fixture
def own_tenant(vault: ServerThread) -> Tenant:
    return make_tenant(vault.settings, vault.database_url)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    informational: list[int] = field(default_factory=list)


class RawConnection:
    """One HTTP/1.1 connection read answer by answer: each head parsed, its body taken by
    Content-Length or chunks, so a head sent twice, lost or mixed into another answer's
    body shows as a wrong status, a wrong body or bytes left over."""

    def __init__(self, server: ServerThread, rcvbuf: int | None = None) -> None:
        host, port = urllib.parse.urlsplit(server.base_url).netloc.split(":")
        self.host = host
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect((host, int(port)))
        self.buffer = bytearray()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def request(
        self, method: str, path: str, token: str, *, body: bytes = b"", extra: str = ""
    ) -> bytes:
        length = f"Content-Length: {len(body)}\r\n" if body or method in ("PUT", "POST") else ""
        return (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {token}\r\n"
            f"X-Request-Id: rt10-{uuid.uuid4().hex}\r\n{length}{extra}\r\n"
        ).encode() + body

    def _fill(self) -> None:
        chunk = self.sock.recv(256 * 1024)
        if not chunk:
            raise EOFError("the connection ended")
        self.buffer += chunk

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        taken = bytes(self.buffer[:size])
        del self.buffer[:size]
        return taken

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, _, _ = bytes(self.buffer).partition(b"\r\n")
        del self.buffer[: len(line) + 2]
        return line

    def head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        raw, _, _ = bytes(self.buffer).partition(b"\r\n\r\n")
        del self.buffer[: len(raw) + 4]
        lines = raw.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 "), lines[0]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"header {name} twice: {raw!r}"
            headers[name.lower()] = value.strip()
        return int(lines[0].split(" ", 2)[1]), headers

    def answer(self, method: str) -> Answer:
        informational = []
        status, headers = self.head()
        while 100 <= status < 200:
            informational.append(status)
            status, headers = self.head()
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif "content-length" in headers:
            body = self._take(int(headers["content-length"]))
        else:
            assert headers.get("transfer-encoding") == "chunked", headers
            pieces = []
            while size := int(self._line(), 16):
                pieces.append(self._take(size))
                assert self._take(2) == b"\r\n"
            assert self._take(2) == b"\r\n"
            body = b"".join(pieces)
        return Answer(status, headers, body, informational)

    def rest(self, timeout: float = 1.0) -> bytes:
        """What arrives after the answers read (nothing, for a well-framed exchange)."""
        self.sock.settimeout(timeout)
        try:
            while chunk := self.sock.recv(65536):
                self.buffer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return bytes(self.buffer)


def _problem(answer: Answer, status: int) -> dict[str, Any]:
    assert answer.status == status, answer
    assert answer.headers["content-type"].startswith("application/problem+json"), answer
    problem: dict[str, Any] = json.loads(answer.body)
    assert problem["status"] == status
    return problem


def test_pipelined_answers_each_get_one_head_in_order_with_their_own_body(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    data = os.urandom(3 * MIB + 5)
    with vault.client() as http:
        ingest = create_key(http, own_tenant, ["ingest"])
        reader = create_key(http, own_tenant, ["read"])
        meta = uploaded(http, ingest, "pipeliner", data)
        value = {"plan": "pro", "n": list(range(50))}
        for name in ("kept", "dropped"):
            created = put_record(http, ingest, "pipeliner", name, json.dumps(value).encode())
            assert created.status_code == 201, created.text
    content = artefact_url("pipeliner", meta["id"], "content")
    with RawConnection(vault) as conn:
        asked = [
            ("GET", record_url("pipeliner", "kept"), reader["secret"], ""),
            ("HEAD", content, reader["secret"], ""),
            ("GET", content, reader["secret"], f"Range: bytes={MIB - 10}-{MIB + 65525}\r\n"),
            ("GET", record_url("pipeliner", "missing"), reader["secret"], ""),
            ("GET", record_url("pipeliner", "kept"), "dv_wrong_key_" + "x" * 40, ""),
            ("DELETE", record_url("pipeliner", "dropped"), ingest["secret"], ""),
            ("GET", content, reader["secret"], "Range: bytes=0-0\r\n"),
            ("GET", record_url("pipeliner", "kept"), reader["secret"], "Connection: close\r\n"),
        ]
        conn.sock.sendall(
            b"".join(
                conn.request(method, path, token, extra=extra)
                for method, path, token, extra in asked
            )
        )
        answers = [conn.answer(method) for method, *_ in asked]
        left = conn.rest()
    assert [a.status for a in answers] == [200, 200, 206, 404, 401, 204, 206, 200]
    assert json.loads(answers[0].body) == value
    assert answers[1].body == b"" and answers[1].headers["content-length"] == str(len(data))
    assert answers[2].body == data[MIB - 10 : MIB + 65526]
    _problem(answers[3], 404)
    _problem(answers[4], 401)
    assert answers[6].body == data[:1]
    assert json.loads(answers[7].body) == value
    assert left == b""  # no head sent twice, nothing after the last answer


def test_a_100_continue_goes_out_once_before_the_answers_head(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    with vault.client() as http:
        ingest = create_key(http, own_tenant, ["ingest"])
    body = json.dumps({"value": "x" * 1000}).encode()
    with RawConnection(vault) as conn:
        path = record_url("continued", "profile") + "?category=account"
        conn.sock.sendall(
            conn.request(
                "PUT", path, ingest["secret"],
                extra=f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n"
                "Expect: 100-continue\r\n",
            ).replace(b"Content-Length: 0\r\n", b"")
        )  # fmt: skip
        status, _ = conn.head()
        assert status == 100  # asked for the body before anything else was sent
        conn.sock.sendall(body)
        answer = conn.answer("PUT")
        conn.sock.sendall(conn.request("GET", record_url("continued", "profile"), ingest["secret"]))
        again = conn.answer("GET")
    assert answer.status == 201 and answer.informational == []
    assert json.loads(answer.body)["name"] == "profile"
    assert again.status in (200, 403)  # the next answer on the connection, framed alone


def test_a_stalled_download_after_a_finished_transfer_on_one_connection_is_cut(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    """The first transfer ends before its first check (its timer cancelled); the next,
    on the same keep-alive connection, stalls: its own watchdog must start and cut it
    once its API key is revoked."""
    data = os.urandom(SIZE)
    with vault.client() as http:
        ingest = create_key(http, own_tenant, ["ingest"])
        reader = create_key(http, own_tenant, ["read"])
        compliance = create_key(http, own_tenant, ["compliance"])
        meta = uploaded(http, ingest, "kept-alive", data)
        created = put_record(http, ingest, "kept-alive", "profile", b'{"a": 1}')
        assert created.status_code == 201
        content = artefact_url("kept-alive", meta["id"], "content")
        with RawConnection(vault, rcvbuf=32 * 1024) as conn:
            conn.sock.sendall(
                conn.request("GET", record_url("kept-alive", "profile"), reader["secret"])
            )
            first = conn.answer("GET")
            assert first.status == 200 and json.loads(first.body) == {"a": 1}
            time.sleep(3 * RECHECK)  # past when the first transfer's check would have been due
            second = conn.request("GET", content, reader["secret"])
            request_id = second.split(b"X-Request-Id: ", 1)[1].split(b"\r\n", 1)[0].decode()
            conn.sock.sendall(second)
            status, _ = conn.head()
            assert status == 200
            time.sleep(4 * RECHECK)  # stalled: the server's buffers fill
            assert len(data_keys_in_memory(own_tenant)) == 1
            revoked = http.delete(f"/v1/api-keys/{reader['id']}", headers=own_tenant.auth())
            assert revoked.status_code == 204

            def logged() -> bool:
                rows = access_log(http, compliance, api_key_id=reader["id"])
                return any(row["request_id"] == request_id for row in rows)

            assert wait_for(logged, timeout=CUT_WITHIN), "the stalled download was not cut"
            rows = access_log(http, compliance, api_key_id=reader["id"])
            keys_after = data_keys_in_memory(own_tenant)
    row = next(row for row in rows if row["request_id"] == request_id)
    assert row["status"] == 401 and row["bytes_out"] < SIZE
    assert keys_after == []


def test_a_download_whose_client_went_away_releases_its_hold_and_key(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    data = os.urandom(SIZE)
    with vault.client() as http:
        ingest = create_key(http, own_tenant, ["ingest"])
        reader = create_key(http, own_tenant, ["read"])
        meta = uploaded(http, ingest, "went-away", data)
    assert wait_for(lambda: transfer_holds(vault.database_url, own_tenant) == 0, timeout=5)
    with RawConnection(vault, rcvbuf=32 * 1024) as conn:
        conn.sock.sendall(
            conn.request("GET", artefact_url("went-away", meta["id"], "content"), reader["secret"])
        )
        status, _ = conn.head()
        assert status == 200
        time.sleep(4 * RECHECK)  # stalled
        assert transfer_holds(vault.database_url, own_tenant) == 1
    # The client is gone (closed with unread bytes: a reset).
    assert wait_for(
        lambda: (
            transfer_holds(vault.database_url, own_tenant) == 0
            and not data_keys_in_memory(own_tenant)
        ),
        timeout=CUT_WITHIN,
    ), "a download whose client went away still holds its key"
    # The filesystem store's reading thread (which opens the segments with the key) ends.
    assert wait_for(
        lambda: not any(t.name == READ_THREAD_NAME for t in threading.enumerate()),
        timeout=CUT_WITHIN,
    ), "a reading thread outlived the download"


SEGMENT = MIB  # plaintext bytes per segment (crypto/FORMAT.md)
TAG = 16
FIXED_HEADER = 77  # header = 77 + len(key id) bytes


@pytest.mark.parametrize("flipped", ["first-segment-tag", "second-segment", "cut-short"], ids=str)
def test_a_tampered_two_segment_seek_is_an_integrity_problem_and_the_connection_lives_on(
    vault: ServerThread, own_tenant: Tenant, flipped: str
) -> None:
    """A player's 64 KiB seek across a segment boundary is opened from the page cache
    (the store's read buffer): a flipped byte in either segment, or a blob cut short,
    is answered as the integrity problem (problem+json, before any head of a 206), no
    byte of plaintext, and the next request on the same connection is answered whole."""
    data = os.urandom(3 * SEGMENT)
    with vault.client() as http:
        ingest = create_key(http, own_tenant, ["ingest"])
        reader = create_key(http, own_tenant, ["read"])
        meta = uploaded(http, ingest, "tampered-seek", data)
        content = artefact_url("tampered-seek", meta["id"], "content")
        seek = f"Range: bytes={SEGMENT - 32768}-{SEGMENT + 32767}\r\n"
        warm = http.get(content, headers={**auth_header(reader), "Range": seek[7:-2]})
        assert warm.status_code == 206 and warm.content == data[SEGMENT - 32768 : SEGMENT + 32768]
    files = [
        p for p in (vault.settings.data_dir / "blobs").rglob("*")
        if p.is_file() and meta["id"] in str(p) and not p.name.endswith(".partial")
    ]  # fmt: skip
    assert len(files) == 1, files
    path = files[0]
    raw = bytearray(path.read_bytes())
    header = FIXED_HEADER + raw[1]
    if flipped == "cut-short":
        os.truncate(path, header + SEGMENT + TAG + 1000)  # the second segment cut
    else:
        at = header + (SEGMENT + 5 if flipped == "first-segment-tag" else SEGMENT + TAG + 777)
        raw[at] ^= 0x01
        path.write_bytes(bytes(raw))
    with RawConnection(vault) as conn:
        conn.sock.sendall(conn.request("GET", content, reader["secret"], extra=seek))
        failed = conn.answer("GET")
        conn.sock.sendall(
            conn.request("GET", record_url("tampered-seek", "none"), reader["secret"])
        )
        after = conn.answer("GET")
    problem = _problem(failed, 500)
    assert problem["type"].endswith("integrity"), problem
    assert data[SEGMENT - 32768 : SEGMENT - 32768 + 64] not in failed.body
    _problem(after, 404)  # framed alone: nothing of the failed seek before or in it


def auth_header(key: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key['secret']}"}


def test_a_stalled_download_is_cut_by_the_clock_during_the_sigterm_drain(
    pg_admin_url: str, tmp_path: Path
) -> None:
    """The drain (uvicorn's graceful shutdown, what SIGTERM starts) waits up to
    drain_seconds for requests in flight; a stalled download's watchdog keeps its clock
    meanwhile: its API key revoked during the drain cuts it within the limit, not at the
    drain's end."""
    data = os.urandom(SIZE)
    with private_server(
        pg_admin_url, tmp_path, transfer_recheck_seconds=RECHECK, drain_seconds=30.0
    ) as draining:
        tenant = make_tenant(draining.settings, draining.database_url)
        with draining.client() as http:
            ingest = create_key(http, tenant, ["ingest"])
            reader = create_key(http, tenant, ["read"])
            meta = uploaded(http, ingest, "drained", data)
        with RawConnection(draining, rcvbuf=32 * 1024) as conn:
            asked = conn.request(
                "GET", artefact_url("drained", meta["id"], "content"), reader["secret"]
            )
            request_id = asked.split(b"X-Request-Id: ", 1)[1].split(b"\r\n", 1)[0].decode()
            conn.sock.sendall(asked)
            status, _ = conn.head()
            assert status == 200
            time.sleep(4 * RECHECK)  # stalled
            draining.server.should_exit = True  # the drain begins
            time.sleep(2 * RECHECK)
            revoked_at = time.monotonic()
            asyncio.run(_revoke(draining, tenant, uuid.UUID(reader["id"])))
            # Not reading: the cut must come from the clock, not from the client.
            found: list[int] = []

            def logged() -> bool:
                status = asyncio.run(_logged_status(draining.database_url, request_id))
                found.extend([] if status is None else [status])
                return bool(found)

            assert wait_for(logged, timeout=CUT_WITHIN, interval=0.1), "not cut during the drain"
            took = time.monotonic() - revoked_at
            ended = _until_closed(conn.sock, timeout=CUT_WITHIN)
        draining.thread.join(timeout=30)
    assert ended in ("reset", "eof")
    assert took < CUT_WITHIN
    assert found[0] == 401


async def _revoke(server: ServerThread, tenant: Tenant, key_id: uuid.UUID) -> None:
    async with operator_context(server.settings, server.database_url) as ctx:
        await ctx.api_keys.revoke(tenant.id, key_id)


async def _logged_status(database_url: str, request_id: str) -> int | None:
    conn = await asyncpg.connect(database_url)
    try:
        found = await conn.fetchval(
            "SELECT status FROM access_log WHERE request_id = $1 ORDER BY seq LIMIT 1", request_id
        )
        return None if found is None else int(found)
    finally:
        await conn.close()


def _until_closed(sock: socket.socket, timeout: float) -> str:
    sock.settimeout(timeout)
    try:
        while sock.recv(256 * 1024):
            pass
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "open"
    return "eof"


def test_an_empty_artefact_reads_as_empty_whole_by_head_and_by_range(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    """The seek path plans segments from the range: an artefact of no bytes has none."""
    with vault.client() as http:
        ingest = create_key(http, own_tenant, ["ingest"])
        reader = create_key(http, own_tenant, ["read"])
        meta = uploaded(http, ingest, "empty-one", b"")
    content = artefact_url("empty-one", meta["id"], "content")
    with RawConnection(vault) as conn:
        asked = [
            ("GET", ""),
            ("HEAD", ""),
            ("GET", "Range: bytes=0-0\r\n"),
            ("GET", "Range: bytes=-5\r\n"),
            ("GET", "Connection: close\r\n"),
        ]
        conn.sock.sendall(
            b"".join(conn.request(m, content, reader["secret"], extra=e) for m, e in asked)
        )
        answers = [conn.answer(method) for method, _ in asked]
        left = conn.rest()
    assert answers[0].status == 200 and answers[0].body == b""
    assert answers[1].status == 200 and answers[1].headers["content-length"] == "0"
    for ranged in answers[2:4]:
        assert ranged.status == 416, ranged
        _problem(ranged, 416)
    assert answers[4].status == 200 and answers[4].body == b""
    assert left == b""


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            with suppress(OSError):
                if needle in path.read_bytes():
                    found.append(path)
    return found


@pytest.mark.parametrize("ending", ["completed", "client-gone"], ids=str)
def test_an_upload_in_flight_writes_no_plaintext_to_disk(
    vault: ServerThread, own_tenant: Tenant, ending: str
) -> None:
    """perf-stream6 seals each segment on the filesystem store's writing thread, from the
    body's pieces: what reaches the data directory (the temp file while the body still
    arrives, the blob once it is whole, nothing once the client went away) is sealed,
    never the plaintext."""
    marker = os.urandom(24).hex().encode()  # 48 bytes the plaintext repeats
    piece = marker * (MIB // len(marker))
    with vault.client() as http:
        ingest = create_key(http, own_tenant, ["ingest"])
    root = vault.settings.data_dir
    with RawConnection(vault) as conn:
        path = subject_url(f"sealed-on-disk-{ending}", "artefacts") + "?category=recording"
        conn.sock.sendall(
            conn.request(
                "POST", path, ingest["secret"],
                extra="Transfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n",
            ).replace(b"Content-Length: 0\r\n", b"")
        )  # fmt: skip
        for _ in range(3):
            conn.sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        time.sleep(1.0)  # the body paused: three segments arrived, two sealed and written
        while_arriving = _files_holding(root, marker)
        temp_files = [p for p in root.rglob("*.partial") if p.stat().st_size > MIB]
        if ending == "completed":
            conn.sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n0\r\n\r\n")
            answer = conn.answer("POST")
            assert answer.status == 201, answer
    time.sleep(0.5)  # the gone client's upload given up, its temp file removed
    after = _files_holding(root, marker)
    assert temp_files, "nothing of the upload was written while its body arrived"
    assert while_arriving == [] and after == []
