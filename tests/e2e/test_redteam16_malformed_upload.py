"""Red team 16: the edge's answer to a malformed chunk (22532dd, 61963fd) attacked with
uploads and smuggling, against a running vault.

A chunked artefact upload whose body turns malformed after megabytes: the request's
handler is told its client is gone while the connection stays open, and the refusal
answers 400 in its place. Nothing of the upload may stay (no artefact, no blob, no
partial file, none of its plaintext in the data directory) and no later request of the
connection (pipelined behind the bad chunk, or hidden in a body framed twice) may run.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from tests.api.helpers import (
    MIB,
    auth,
    blob_files,
    blob_root,
    create_key,
    data_keys,
    object_files,
    record_url,
    subject_url,
    wait_for,
)
from tests.support import ServerThread, Tenant
from vault.config import Settings
from vault.db.database import DEPLOYMENT_TENANT

# Plaintext the upload carries: found in no file of the blob store afterwards.
MARKER = b"rt16-plaintext-marker-"


def _address(server: ServerThread) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").split(":")
    return host, int(port)


def _upload_head(server: ServerThread, secret: str, ref: str, request_id: str) -> bytes:
    host, port = _address(server)
    return (
        f"POST {subject_url(ref, 'artefacts')}?category=recording HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\nAuthorization: Bearer {secret}\r\n"
        f"X-Request-Id: {request_id}\r\n"
        "Content-Type: audio/wav\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()


def _record_put(server: ServerThread, secret: str, ref: str, framing: str, body: bytes) -> bytes:
    host, port = _address(server)
    return (
        f"PUT {record_url(ref, 'note')}?category=account HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\nAuthorization: Bearer {secret}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode() + body


def _read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    received = bytearray()
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        pass
    return bytes(received)


def _artefacts(server: ServerThread, read_key: dict[str, Any], ref: str) -> list[object]:
    with server.client() as http:
        listed = http.get(subject_url(ref, "artefacts"), headers=auth(read_key))
    if listed.status_code == 404:
        return []
    assert listed.status_code == 200, listed.text
    items: list[object] = listed.json()["items"]
    return items


def _with_marker(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in blob_files(root) if MARKER in p.read_bytes()]


def test_an_upload_whose_body_turns_malformed_leaves_nothing_while_the_connection_stays(
    server: ServerThread, tenant: Tenant, settings: Settings
) -> None:
    root = blob_root(settings)
    before = object_files(root)
    ref = f"rt16-up-{uuid.uuid4().hex[:8]}"
    request_id = f"rt16-{uuid.uuid4().hex}"
    with server.client() as http:
        keys = data_keys(http, tenant)
    plaintext = (MARKER * (MIB // len(MARKER) + 1))[:MIB]
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(_upload_head(server, keys.ingest["secret"], ref, request_id))
        for _ in range(3):
            sock.sendall(f"{len(plaintext):x}\r\n".encode() + plaintext + b"\r\n")
        time.sleep(0.3)  # the vault is writing the upload's first segments
        sock.sendall(b"zz\r\nnot a chunk\r\n")
        answered = _read_until_closed(sock, timeout=3.0)
        # The connection is still open on our side: nothing below relies on a close.
        assert answered.startswith(b"HTTP/1.1 400 "), answered[:80]
        assert b"500" not in answered.split(b"\r\n", 1)[0]
        assert wait_for(lambda: _artefacts(server, keys.read, ref) == [], timeout=5)
        assert wait_for(lambda: not (object_files(root) - before), timeout=5), sorted(
            str(p.relative_to(root)) for p in object_files(root) - before
        )
        assert not [p for p in blob_files(root) if p.name.endswith(".partial")]
        assert _with_marker(root) == []
    # The upload is logged once, as the request its client broke off (its route, 499).
    assert wait_for(lambda: bool(_rows_under(server.database_url, request_id)), timeout=5)
    time.sleep(0.2)  # a second row, if any, has had its time to commit
    rows = [row for row in _rows_under(server.database_url, request_id) if not row[2]]
    assert rows == [(499, "/v1/subjects/{ref}/artefacts", False)], rows


def test_a_request_pipelined_after_a_malformed_chunk_never_runs(
    server: ServerThread, tenant: Tenant
) -> None:
    ref = f"rt16-pipe-{uuid.uuid4().hex[:8]}"
    with server.client() as http:
        writer = create_key(http, tenant, ["ingest", "read"])
    first = _record_put(server, writer["secret"], ref, "Transfer-Encoding: chunked", b"")
    smuggled = _record_put(server, writer["secret"], ref, "Content-Length: 8", b'{"n": 2}')
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(first + b"2\r\n{}\r\n")
        time.sleep(0.2)  # the handler is reading the body
        sock.sendall(b"zz\r\nnot a chunk\r\n" + smuggled)
        answered = _read_until_closed(sock, timeout=2.0)
    assert answered.startswith(b"HTTP/1.1 400 "), answered[:80]
    assert answered.count(b"HTTP/1.1 ") == 1, answered
    with server.client() as http:
        stored = http.get(record_url(ref, "note"), headers=auth(writer))
    assert stored.status_code == 404, stored.status_code


def test_a_body_framed_twice_smuggles_no_request(server: ServerThread, tenant: Tenant) -> None:
    """Content-Length and Transfer-Encoding together: refused, and what the one framing
    would read as a second request is never run."""
    ref = f"rt16-cl-te-{uuid.uuid4().hex[:8]}"
    with server.client() as http:
        writer = create_key(http, tenant, ["ingest", "read"])
    smuggled = _record_put(server, writer["secret"], ref, "Content-Length: 8", b'{"n": 3}')
    body = b"0\r\n\r\n" + smuggled
    framed_twice = _record_put(
        server, writer["secret"], ref,
        f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked", body,
    )  # fmt: skip
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(framed_twice)
        answered = _read_until_closed(sock, timeout=2.0)
    assert answered.startswith(b"HTTP/1.1 400 "), answered[:80]
    assert answered.count(b"HTTP/1.1 ") == 1, answered
    with server.client() as http:
        stored = http.get(record_url(ref, "note"), headers=auth(writer))
    assert stored.status_code == 404, stored.status_code


def _rows_under(database_url: str, request_id: str) -> list[tuple[int, str, bool]]:
    """(status, route, under the deployment tenant) of every access-log row with the id,
    read as the database's owner."""

    async def fetch() -> list[tuple[int, str, bool]]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT status, route, tenant_id = $2 AS deployment FROM access_log"
                " WHERE request_id = $1 ORDER BY seq",
                request_id, DEPLOYMENT_TENANT,
            )  # fmt: skip
            return [(row["status"], row["route"], row["deployment"]) for row in rows]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def test_the_refusal_of_a_broken_body_is_logged_unmatched(
    server: ServerThread, tenant: Tenant
) -> None:
    """Found by red team 16: the refusal's scope was a copy of the running upload's, which
    the router had filled in, so its row, log line and metric named the upload's route
    (and its path parameters, the subject reference, were in its scope). Fixed: the
    refusal's scope holds only what the connection and the head gave."""
    ref = f"rt16-row-{uuid.uuid4().hex[:8]}"
    request_id = f"rt16-{uuid.uuid4().hex}"
    with server.client() as http:
        keys = data_keys(http, tenant)
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(_upload_head(server, keys.ingest["secret"], ref, request_id))
        sock.sendall(b"4\r\nRIFF\r\n")
        time.sleep(0.2)  # the upload's handler is reading its body
        sock.sendall(b"zz\r\n")
        answered = _read_until_closed(sock, timeout=2.0)
    assert answered.startswith(b"HTTP/1.1 400 "), answered[:80]
    assert wait_for(lambda: len(_rows_under(server.database_url, request_id)) == 2, timeout=5)
    rows = _rows_under(server.database_url, request_id)
    upload_route = "/v1/subjects/{ref}/artefacts"
    # The upload: its tenant's row, its route, broken off by its client.
    assert (499, upload_route, False) in rows, rows
    # The refusal: no key, so the deployment's log; it matched no route.
    assert (400, "(unmatched)", True) in rows, rows
