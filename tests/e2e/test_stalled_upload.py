"""A client that stops sending half way through an upload is given up after the idle
timeout: 408, no artefact, no partial blob, and the connection is freed. One that keeps
sending, however slowly, is not: the server hands an upload its body a segment at a time
(vault/http/edge_limits.py BODY_MESSAGE_BYTES), but never holds back bytes that arrived
for longer than a fraction of the idle limit."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import time
import urllib.parse

from tests.api.helpers import create_key
from tests.support import Tenant, bearer, running_server
from vault.config import Settings


def test_stalled_upload_times_out_and_leaves_nothing(
    settings: Settings, database_url: str, tenant: Tenant
) -> None:
    quick = dataclasses.replace(settings, upload_idle_timeout_seconds=1.0)
    with running_server(quick, database_url) as server, server.client() as http:
        token = create_key(http, tenant, ["ingest", "read"])["secret"]
        host, port = urllib.parse.urlsplit(server.base_url).netloc.split(":")
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(
                b"POST /v1/subjects/stalled/artefacts?category=recording HTTP/1.1\r\n"
                + f"Host: {host}\r\nAuthorization: Bearer {token}\r\n".encode()
                + b"Content-Type: audio/wav\r\nContent-Length: 1048576\r\n\r\n"
                + b"x" * 100_000
            )
            started = time.monotonic()
            answer = conn.recv(4096)  # then nothing more is sent
            waited = time.monotonic() - started
        listed = http.get("/v1/subjects/stalled/artefacts", headers=bearer(token))
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert waited < 8
    assert listed.status_code == 200 and listed.json()["items"] == []
    partial = [p for p in (settings.data_dir.resolve() / "blobs").rglob("*.partial")]
    assert partial == []


def test_a_slow_upload_that_keeps_sending_completes(
    settings: Settings, database_url: str, tenant: Tenant
) -> None:
    # 20 KB every 0.3 s against an idle limit of 1 s: the whole body (200 KB, a fifth of
    # the segment the server gathers a message to) takes 3 s to arrive.
    quick = dataclasses.replace(settings, upload_idle_timeout_seconds=1.0)
    body = bytes(range(256)) * 800  # 204,800 bytes
    with running_server(quick, database_url) as server, server.client() as http:
        token = create_key(http, tenant, ["ingest", "read"])["secret"]
        host, port = urllib.parse.urlsplit(server.base_url).netloc.split(":")
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(
                b"POST /v1/subjects/slow/artefacts?category=recording HTTP/1.1\r\n"
                + f"Host: {host}\r\nAuthorization: Bearer {token}\r\n".encode()
                + b"Content-Type: audio/wav\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
            )
            for start in range(0, len(body), 20_480):
                time.sleep(0.3)
                conn.sendall(body[start : start + 20_480])
            answer = b""
            while more := conn.recv(65536):
                answer += more
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201"), head[:200]
    stored = json.loads(payload)
    assert stored["size"] == len(body)
    assert stored["sha256"] == hashlib.sha256(body).hexdigest()
