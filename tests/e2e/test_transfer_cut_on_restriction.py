"""Red team (second outside review): a transfer already streaming is cut only when its
data key is destroyed or its API key revoked. A restriction of processing (API.md: "from
then on only the compliance scope reads the subject's data"), or an erasure whose hold
keeps the artefact (kept data is "readable only for the compliance scope"), leaves the
key alive: a read-scope download, or a playback link's stream, that began before goes on
to the last byte, however long its client takes. The watchdog confirms key liveness only
(transfers.sql `still_live`), never whether the caller may still read the subject.

Steps: a read key starts downloading a 16 MiB recording and stops reading; the subject is
restricted (or erased under a hold); the vault confirms the transfer every 0.2 s here.
Observed: nothing is cut; the client reads the whole object once it reads on (seen with
production settings too: 40 MiB, 30 s after the restriction).
"""

from __future__ import annotations

import os
import socket
import time
import urllib.parse
import uuid
from typing import Any

import httpx
import pytest

from tests.api.helpers import (
    access_log,
    artefact_url,
    auth,
    create_key,
    subject_url,
    uploaded,
    wait_for,
)
from tests.jobs import run_worker_pass
from tests.support import (
    ServerThread,
    Tenant,
    make_tenant,
    module_private_server,
    read_response_head,
)

MIB = 1024 * 1024
# More than the kernel's and the server's buffers hold for a client that stops reading.
SIZE = 16 * MIB
RECHECK = 0.2
# What the tests allow for the cut: a few rechecks and the cut itself on a busy machine.
CUT_WITHIN = 5.0
# How long the negatives stall their client before reading on: ten rechecks, each of
# which would have cut it (a cut at any later point still fails them: they read the whole
# object). Waiting out CUT_WITHIN instead proved nothing more and cost 3 s a test.
RUNS_ON_FOR = 10 * RECHECK


vault = module_private_server("restriction-cut", transfer_recheck_seconds=RECHECK)


@pytest.fixture
def own_tenant(vault: ServerThread) -> Tenant:
    return make_tenant(vault.settings, vault.database_url)


class _StalledClient:
    """A raw HTTP/1.1 GET that reads the response head, then stops reading (a small
    receive window, so the server's send soon waits)."""

    def __init__(self, server: ServerThread, path: str, token: str | None) -> None:
        host, port = urllib.parse.urlsplit(server.base_url).netloc.split(":")
        self.request_id = f"stalled-{uuid.uuid4().hex}"
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        self.sock.settimeout(10)
        self.sock.connect((host, int(port)))
        authorization = f"Authorization: Bearer {token}\r\n" if token else ""
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{authorization}"
            f"X-Request-Id: {self.request_id}\r\n\r\n".encode()
        )
        received = read_response_head(self.sock)
        self.head, _, body = received.partition(b"\r\n\r\n")
        self.received = len(body)

    def __enter__(self) -> _StalledClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def status(self) -> int:
        return int(self.head.split(b" ", 2)[1])

    def content_length(self) -> int | None:
        for line in self.head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                return int(value)
        return None

    def drain(self, timeout: float = 5.0) -> None:
        """Read on until the body's Content-Length is in, or the connection ends (or
        `timeout` seconds pass without a byte). Stopping at the length, not at the end of
        a kept-alive connection, spares waiting out the server's keep-alive timeout."""
        expected = self.content_length()
        self.sock.settimeout(timeout)
        try:
            while expected is None or self.received < expected:
                chunk = self.sock.recv(256 * 1024)
                if not chunk:
                    break
                self.received += len(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
        finally:
            self.sock.close()


def _cut_row(
    http: httpx.Client,
    compliance: dict[str, Any],
    key: dict[str, Any],
    client: _StalledClient,
    within: float = CUT_WITHIN,
) -> dict[str, Any] | None:
    """The stalled request's access-log row, written once the vault cut it (a transfer
    still running has none yet); None if none came within `within` seconds."""
    found: list[dict[str, Any]] = []

    def logged() -> bool:
        rows = access_log(http, compliance, api_key_id=key["id"])
        found.extend(row for row in rows if row["request_id"] == client.request_id)
        return bool(found)

    return found[0] if wait_for(logged, timeout=within) else None


def test_stalled_download_is_cut_once_its_subject_is_restricted(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    with vault.client() as http:
        ingest = create_key(http, own_tenant, ["ingest"])
        meta = uploaded(http, ingest, "objector", os.urandom(SIZE))
        reader = create_key(http, own_tenant, ["read"])
        privacy = create_key(http, own_tenant, ["erasure"])
        compliance = create_key(http, own_tenant, ["compliance"])
        url = artefact_url("objector", meta["id"], "content")
        with _StalledClient(vault, url, reader["secret"]) as client:
            time.sleep(4 * RECHECK)
            assert client.status() == 200
            restricted = http.post(
                subject_url("objector", "restriction"),
                json={"reason": "objection (Art. 21)"},
                headers=auth(privacy),
            )
            assert restricted.status_code == 200, restricted.text
            fresh = http.get(url, headers=auth(reader))
            row = _cut_row(http, compliance, reader, client)
            client.drain()
    assert fresh.status_code == 403  # a new read is refused at once
    assert row is not None, "the running download of a restricted subject was not cut"
    assert row["status"] >= 400 and row["bytes_out"] < SIZE
    assert client.received < SIZE


def test_stalled_download_is_cut_once_an_erasure_keeps_its_artefact(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    with vault.client() as http:
        ingest = create_key(http, own_tenant, ["ingest"])
        meta = uploaded(http, ingest, "litigant", os.urandom(SIZE))
        reader = create_key(http, own_tenant, ["read"])
        privacy = create_key(http, own_tenant, ["erasure"])
        compliance = create_key(http, own_tenant, ["compliance"])
        placed = http.post(
            "/v1/holds",
            json={"subject_ref": "litigant", "reason": "fraud_investigation", "reference": "F-1"},
            headers=auth(compliance),
        )
        assert placed.status_code == 201, placed.text
        url = artefact_url("litigant", meta["id"], "content")
        with _StalledClient(vault, url, reader["secret"]) as client:
            time.sleep(4 * RECHECK)
            assert client.status() == 200
            erasure = http.post(subject_url("litigant", "erasure"), headers=auth(privacy))
            assert erasure.status_code == 202, erasure.text
            run_worker_pass(vault)  # shredded but for the held recording
            shown = http.get(f"/v1/erasures/{erasure.json()['id']}", headers=auth(privacy))
            fresh = http.get(url, headers=auth(reader))
            row = _cut_row(http, compliance, reader, client)
            client.drain()
    assert shown.json()["status"] == "held"
    assert fresh.status_code == 403  # kept data: compliance only
    assert row is not None, "the running download of kept data was not cut"
    assert row["status"] >= 400 and row["bytes_out"] < SIZE
    assert client.received < SIZE


def test_stalled_playback_stream_is_cut_once_its_subject_is_restricted(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    with vault.client() as http:
        ingest = create_key(http, own_tenant, ["ingest"])
        meta = uploaded(http, ingest, "viewer", os.urandom(SIZE))
        reader = create_key(http, own_tenant, ["read"])
        privacy = create_key(http, own_tenant, ["erasure"])
        compliance = create_key(http, own_tenant, ["compliance"])
        link = http.post(artefact_url("viewer", meta["id"], "links"), headers=auth(reader))
        assert link.status_code == 201, link.text
        path = urllib.parse.urlsplit(link.json()["url"]).path
        with _StalledClient(vault, path, None) as client:
            time.sleep(4 * RECHECK)
            assert client.status() == 200
            restricted = http.post(
                subject_url("viewer", "restriction"),
                json={"reason": "objection (Art. 21)"},
                headers=auth(privacy),
            )
            assert restricted.status_code == 200, restricted.text
            again = http.get(path)
            row = _cut_row(http, compliance, reader, client)
            client.drain()
    assert again.status_code == 404  # the link is dead for the next request
    assert row is not None, "the running playback stream of a restricted subject was not cut"
    assert client.received < SIZE


def test_stalled_download_of_an_unrestricted_subject_runs_on(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    """The negative: with nothing restricted, erased or revoked the stream is not cut."""
    with vault.client() as http:
        ingest = create_key(http, own_tenant, ["ingest"])
        meta = uploaded(http, ingest, "patient", os.urandom(SIZE))
        reader = create_key(http, own_tenant, ["read"])
        compliance = create_key(http, own_tenant, ["compliance"])
        url = artefact_url("patient", meta["id"], "content")
        with _StalledClient(vault, url, reader["secret"]) as client:
            time.sleep(4 * RECHECK)
            assert client.status() == 200
            row = _cut_row(http, compliance, reader, client, within=RUNS_ON_FOR)
            client.drain()
    assert row is None
    assert client.received == SIZE


def test_stalled_compliance_download_runs_on_after_a_restriction(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    """The negative: a restriction leaves the compliance scope reading (API.md), so a
    compliance download running when the subject is restricted is not cut."""
    with vault.client() as http:
        ingest = create_key(http, own_tenant, ["ingest"])
        meta = uploaded(http, ingest, "complainant", os.urandom(SIZE))
        privacy = create_key(http, own_tenant, ["erasure"])
        compliance = create_key(http, own_tenant, ["compliance"])
        url = artefact_url("complainant", meta["id"], "content")
        with _StalledClient(vault, url, compliance["secret"]) as client:
            time.sleep(4 * RECHECK)
            assert client.status() == 200
            restricted = http.post(
                subject_url("complainant", "restriction"),
                json={"reason": "objection (Art. 21)"},
                headers=auth(privacy),
            )
            assert restricted.status_code == 200, restricted.text
            row = _cut_row(http, compliance, compliance, client, within=RUNS_ON_FOR)
            client.drain()
    assert row is None
    assert client.received == SIZE


def test_stalled_compliance_download_of_kept_data_runs_on(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    """The negative: what an erasure keeps under a hold stays readable for compliance."""
    with vault.client() as http:
        ingest = create_key(http, own_tenant, ["ingest"])
        meta = uploaded(http, ingest, "suspect", os.urandom(SIZE))
        privacy = create_key(http, own_tenant, ["erasure"])
        compliance = create_key(http, own_tenant, ["compliance"])
        placed = http.post(
            "/v1/holds",
            json={"subject_ref": "suspect", "reason": "fraud_investigation", "reference": "F-2"},
            headers=auth(compliance),
        )
        assert placed.status_code == 201, placed.text
        url = artefact_url("suspect", meta["id"], "content")
        with _StalledClient(vault, url, compliance["secret"]) as client:
            time.sleep(4 * RECHECK)
            assert client.status() == 200
            erasure = http.post(subject_url("suspect", "erasure"), headers=auth(privacy))
            assert erasure.status_code == 202, erasure.text
            run_worker_pass(vault)
            row = _cut_row(http, compliance, compliance, client, within=RUNS_ON_FOR)
            client.drain()
    assert row is None
    assert client.received == SIZE
