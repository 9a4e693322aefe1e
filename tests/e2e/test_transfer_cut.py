"""Transfers are cut by the clock (DESIGN.md, Deletion guarantees: within 60 s, whether
or not the client is reading): a download, range read or export whose data key is
destroyed, or whose API key is revoked, stops and its connection is reset; an upload by
a key revoked midway is refused and leaves nothing. The vault here confirms every
RECHECK seconds (in production TRANSFER_RECHECK_SECONDS, 10 s), so each test takes
seconds; a client that stopped reading is a raw socket with a small receive window."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import (
    access_log,
    artefact_url,
    auth,
    blob_files,
    blob_root,
    create_key,
    subject_url,
    uploaded,
    wait_for,
)
from tests.jobs import run_worker_pass
from tests.support import (
    ServerThread,
    Tenant,
    data_keys_in_memory,
    make_tenant,
    module_private_server,
    read_response_head,
)
from vault.runtime import operator_context

MIB = 1024 * 1024
# More than the kernel's and the server's buffers hold for a client that stops reading.
SIZE = 16 * MIB
RECHECK = 0.2
# What the tests allow for the cut: a few rechecks and the cut itself on a busy machine.
CUT_WITHIN = 5.0


# A vault of its own with a short recheck and no background jobs (the erasure test
# runs them by hand).
vault = module_private_server("transfer-cut", transfer_recheck_seconds=RECHECK)


@pytest.fixture
def own_tenant(vault: ServerThread) -> Tenant:
    return make_tenant(vault.settings, vault.database_url)


class _Client:
    """A raw HTTP/1.1 client that reads the head and a little of the body, then stops."""

    def __init__(self, server: ServerThread, path: str, token: str, extra: str = "") -> None:
        host, port = urllib.parse.urlsplit(server.base_url).netloc.split(":")
        self.request_id = f"transfer-{uuid.uuid4().hex}"
        self.sock = socket.socket()
        # A small window: the server's buffers fill soon after the client stops reading.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        self.sock.settimeout(10)
        self.sock.connect((host, int(port)))
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"X-Request-Id: {self.request_id}\r\n{extra}\r\n".encode()
        )
        received = read_response_head(self.sock)
        self.head, _, body = received.partition(b"\r\n\r\n")
        self.received = len(body)

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()  # a failed test must not leave the vault a connection to drain

    def status(self) -> int:
        return int(self.head.split(b" ", 2)[1])

    def read_slowly(self, until: int, pause: float = 0.02) -> bool:
        """Read at most 64 KiB at a time, pausing between reads (about 3 MiB/s), until
        `until` body bytes in all; False if the connection ended first."""
        while self.received < until:
            try:
                chunk = self.sock.recv(64 * 1024)
            except ConnectionResetError:
                return False
            if not chunk:
                return False
            self.received += len(chunk)
            time.sleep(pause)
        return True

    def drain(self, timeout: float = 5.0) -> str:
        """Read what is left; how the connection ended: eof, reset or open (still there
        after `timeout` seconds without a byte)."""
        self.sock.settimeout(timeout)
        try:
            while chunk := self.sock.recv(256 * 1024):
                self.received += len(chunk)
        except ConnectionResetError:
            return "reset"
        except TimeoutError:
            return "open"
        finally:
            self.sock.close()
        return "eof"


def _logged(
    http: httpx.Client, compliance: dict[str, Any], key: dict[str, Any], request_id: str
) -> dict[str, Any] | None:
    rows = access_log(http, compliance, api_key_id=key["id"])
    return next((row for row in rows if row["request_id"] == request_id), None)


def _row_once_cut(
    http: httpx.Client, compliance: dict[str, Any], key: dict[str, Any], client: _Client
) -> dict[str, Any]:
    """The request's access-log row, written when the vault cut it: waited for without
    reading from the client's socket."""
    found: list[dict[str, Any]] = []

    def logged() -> bool:
        row = _logged(http, compliance, key, client.request_id)
        found.extend([row] if row else [])
        return bool(found)

    assert wait_for(logged, timeout=CUT_WITHIN), "the stalled transfer was not cut"
    return found[0]


def _stored(
    http: httpx.Client, tenant: Tenant, ref: str, data: bytes
) -> tuple[dict[str, Any], dict[str, Any]]:
    ingest = create_key(http, tenant, ["ingest"])
    return ingest, uploaded(http, ingest, ref, data)


def test_stalled_download_is_cut_by_the_clock_once_its_artefact_is_deleted(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    data = os.urandom(SIZE)
    with vault.client() as http:
        ingest, meta = _stored(http, own_tenant, "stalled-listener", data)
        reader = create_key(http, own_tenant, ["read"])
        compliance = create_key(http, own_tenant, ["compliance"])
        url = artefact_url("stalled-listener", meta["id"], "content")
        with _Client(vault, url, reader["secret"]) as client:
            time.sleep(4 * RECHECK)  # stalled: the server's buffers fill, its send waits
            assert client.status() == 200
            assert len(data_keys_in_memory(own_tenant)) == 1  # the stalled stream holds it
            gone = http.delete(artefact_url("stalled-listener", meta["id"]), headers=auth(ingest))
            assert gone.status_code == 204
            row = _row_once_cut(http, compliance, reader, client)
            keys_after = data_keys_in_memory(own_tenant)
            ended = client.drain()
    # Recorded as what ended it (the key is gone: 404), not as the 200 that was sent.
    assert row["status"] == 404 and 0 < row["bytes_out"] < SIZE
    assert keys_after == []
    assert ended in ("reset", "eof") and client.received < SIZE


def test_stalled_range_read_is_cut_once_its_api_key_is_revoked(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    data = os.urandom(SIZE)
    with vault.client() as http:
        _, meta = _stored(http, own_tenant, "range-listener", data)
        reader = create_key(http, own_tenant, ["read"])
        compliance = create_key(http, own_tenant, ["compliance"])
        url = artefact_url("range-listener", meta["id"], "content")
        with _Client(vault, url, reader["secret"], f"Range: bytes={MIB}-\r\n") as client:
            time.sleep(4 * RECHECK)
            assert client.status() == 206
            revoked = http.delete(f"/v1/api-keys/{reader['id']}", headers=own_tenant.auth())
            assert revoked.status_code == 204
            row = _row_once_cut(http, compliance, reader, client)
            keys_after = data_keys_in_memory(own_tenant)
            ended = client.drain()
    assert row["status"] == 401 and row["bytes_out"] < SIZE - MIB
    assert keys_after == []
    assert ended in ("reset", "eof") and client.received < SIZE - MIB


def test_reading_download_is_cut_once_its_subject_is_erased(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    data = os.urandom(SIZE)
    with vault.client() as http:
        _, meta = _stored(http, own_tenant, "erased-listener", data)
        reader = create_key(http, own_tenant, ["read"])
        privacy = create_key(http, own_tenant, ["erasure"])
        url = artefact_url("erased-listener", meta["id"], "content")
        with _Client(vault, url, reader["secret"]) as client:
            assert client.read_slowly(256 * 1024)
            erasure = http.post(subject_url("erased-listener", "erasure"), headers=auth(privacy))
            assert erasure.status_code == 202, erasure.text
            run_worker_pass(vault)  # the erasure job, by hand: the subject's keys go
            destroyed = time.monotonic()
            # The client keeps reading: the whole object would take more than 5 s.
            read_all = client.read_slowly(SIZE)
            took = time.monotonic() - destroyed
    assert not read_all and client.received < SIZE
    assert took < CUT_WITHIN


def test_stalled_export_is_cut_once_its_api_key_is_revoked(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    data = os.urandom(SIZE)
    with vault.client() as http:
        _stored(http, own_tenant, "exported", data)
        reader = create_key(http, own_tenant, ["read"])
        compliance = create_key(http, own_tenant, ["compliance"])
        with _Client(vault, subject_url("exported", "export"), reader["secret"]) as client:
            time.sleep(4 * RECHECK)
            assert client.status() == 200
            revoked = http.delete(f"/v1/api-keys/{reader['id']}", headers=own_tenant.auth())
            assert revoked.status_code == 204
            row = _row_once_cut(http, compliance, reader, client)
            # An export's ZIP writer may be finishing one piece in its thread: it lets
            # go of the key at its next one.
            released = wait_for(lambda: data_keys_in_memory(own_tenant) == [], timeout=2)
            ended = client.drain()
    assert row["status"] == 401 and row["bytes_out"] < SIZE
    assert released
    assert ended in ("reset", "eof") and client.received < SIZE


def test_stalled_download_nothing_revoked_runs_on_and_completes(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    """The negative: a live transfer is confirmed again and again, never cut."""
    data = os.urandom(SIZE)
    with vault.client() as http:
        _, meta = _stored(http, own_tenant, "patient-listener", data)
        reader = create_key(http, own_tenant, ["read"])
        compliance = create_key(http, own_tenant, ["compliance"])
        url = artefact_url("patient-listener", meta["id"], "content")
        with _Client(vault, url, reader["secret"]) as client:
            time.sleep(10 * RECHECK)  # stalled through ten checks
            client.sock.settimeout(10)
            while client.received < SIZE:
                chunk = client.sock.recv(256 * 1024)
                assert chunk, "cut although nothing was revoked"
                client.received += len(chunk)
        assert wait_for(lambda: _logged(http, compliance, reader, client.request_id) is not None)
        row = _logged(http, compliance, reader, client.request_id)
    assert client.received == SIZE
    assert row is not None and row["status"] == 200 and row["bytes_out"] == SIZE


def _upload_state(vault: ServerThread, tenant: Tenant) -> list[tuple[str, bool]]:
    """(state, data key destroyed) of every artefact row the tenant has."""

    async def read() -> list[tuple[str, bool]]:
        async with (
            operator_context(vault.settings, vault.database_url) as ctx,
            ctx.db.tenant_tx(tenant.id) as conn,
        ):
            rows = await conn.fetch(
                "SELECT a.state, d.wrapped_key IS NULL AS destroyed FROM artefacts a"
                " JOIN data_keys d ON d.tenant_id = a.tenant_id AND d.id = a.data_key_id"
                " WHERE a.tenant_id = $1",
                tenant.id,
            )
        return [(row["state"], row["destroyed"]) for row in rows]

    return asyncio.run(read())


def test_upload_by_a_key_revoked_midway_is_refused_and_leaves_nothing(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    with vault.client() as http:
        uploader = create_key(http, own_tenant, ["ingest"])
        reader = create_key(http, own_tenant, ["read"])
        host, port = urllib.parse.urlsplit(vault.base_url).netloc.split(":")
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(
                f"POST {subject_url('revoked-uploader', 'artefacts')}?category=recording "
                f"HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {uploader['secret']}\r\n"
                f"Content-Type: audio/wav\r\nContent-Length: {SIZE}\r\n\r\n".encode()
                + os.urandom(2 * MIB)
            )
            time.sleep(2 * RECHECK)  # the upload is under way, waiting for more body
            revoked = http.delete(f"/v1/api-keys/{uploader['id']}", headers=own_tenant.auth())
            assert revoked.status_code == 204
            conn.settimeout(CUT_WITHIN)
            answer = read_response_head(conn)
        # The abandoned upload shreds its key and removes its blob (shielded, so it may
        # finish just after the answer).
        assert wait_for(lambda: _upload_state(vault, own_tenant) == [("deleted", True)])
        listed = http.get(subject_url("revoked-uploader", "artefacts"), headers=auth(reader))
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert listed.status_code == 200 and listed.json()["items"] == []
    root: Path = blob_root(vault.settings)
    assert wait_for(lambda: blob_files(root, f"tenants/{own_tenant.id}/") == [])
