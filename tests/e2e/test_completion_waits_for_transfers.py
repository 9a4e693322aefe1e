"""Red team (second outside review): an erasure completes, with its final receipt, while a
download of the erased subject still holds the data key and is still streaming plaintext.

DESIGN.md, Deletion guarantees: "'Completed' means: the shred is committed, its
shred-ledger entry is durable outside PostgreSQL, and no process holds the key any more
[...] downloads already streaming are cut within that time [...] Receipts are issued only
then." The ledger publisher completes an erasure as soon as its ledger rows are published
(workers/ledger.py `complete_published_erasures`, two seconds after the shred), while a
running transfer is cut only at its next confirmation, up to 10 s later (50 s when the
database cannot be reached): the receipt says completed while a process still holds the
key.

Steps (production recheck of 10 s): a read key starts a 16 MiB download and stops
reading; the subject is erased; one worker pass. Observed: the erasure is `completed`
and its final receipt is served while the download has not been cut (no access-log row
yet; the vault still holds the data key).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from tests.api.helpers import (
    access_log,
    artefact_url,
    auth,
    create_key,
    put_record,
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
    private_server,
    read_response_head,
)

MIB = 1024 * 1024
SIZE = 16 * MIB


@pytest.fixture(scope="module")
def vault(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """The production recheck interval (10 s); no background jobs (run by hand)."""
    with private_server(pg_admin_url, tmp_path_factory.mktemp("completion-waits")) as server:
        yield server


@pytest.fixture(scope="module")
def quick_vault(
    pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    """Transfers confirmed every 0.2 s: a cut comes soon after the shred."""
    with private_server(
        pg_admin_url, tmp_path_factory.mktemp("completion-after-cut"), transfer_recheck_seconds=0.2
    ) as server:
        yield server


@pytest.fixture
def own_tenant(vault: ServerThread) -> Tenant:
    return make_tenant(vault.settings, vault.database_url)


def _status(http: Any, privacy: dict[str, Any], erasure_id: str) -> str:
    status: str = http.get(f"/v1/erasures/{erasure_id}", headers=auth(privacy)).json()["status"]
    return status


def _start_stalled_download(
    server: ServerThread, path: str, secret: str, request_id: str
) -> socket.socket:
    host, port = urllib.parse.urlsplit(server.base_url).netloc.split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {secret}\r\n"
        f"X-Request-Id: {request_id}\r\n\r\n".encode()
    )
    assert read_response_head(sock).startswith(b"HTTP/1.1 200")
    return sock


def test_an_erasure_completes_only_once_no_transfer_holds_its_keys(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    with vault.client() as http:
        ingest = create_key(http, own_tenant, ["ingest"])
        meta = uploaded(http, ingest, "listener", os.urandom(SIZE))
        reader = create_key(http, own_tenant, ["read"])
        privacy = create_key(http, own_tenant, ["erasure"])
        compliance = create_key(http, own_tenant, ["compliance"])
        host, port = urllib.parse.urlsplit(vault.base_url).netloc.split(":")
        request_id = f"held-open-{uuid.uuid4().hex}"
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            sock.sendall(
                f"GET {artefact_url('listener', meta['id'], 'content')} HTTP/1.1\r\n"
                f"Host: {host}\r\nAuthorization: Bearer {reader['secret']}\r\n"
                f"X-Request-Id: {request_id}\r\n\r\n".encode()
            )
            assert read_response_head(sock).startswith(b"HTTP/1.1 200")
            erasure = http.post(subject_url("listener", "erasure"), headers=auth(privacy))
            assert erasure.status_code == 202, erasure.text
            run_worker_pass(vault)  # shred, publish to the ledger, complete
            shown = http.get(f"/v1/erasures/{erasure.json()['id']}", headers=auth(privacy))
            receipt = http.get(
                f"/v1/erasures/{erasure.json()['id']}/receipt", headers=auth(privacy)
            )
            rows = access_log(http, compliance, api_key_id=reader["id"])
            still_streaming = not any(row["request_id"] == request_id for row in rows)
            keys_held = len(data_keys_in_memory(own_tenant))
    completed = shown.json()["status"] == "completed"
    assert not (completed and still_streaming), (
        f"completed with a download still streaming ({keys_held} data key(s) in memory); "
        f"receipt {receipt.status_code}"
    )
    assert not (receipt.status_code == 200 and still_streaming)


def test_an_erasure_completes_once_the_download_holding_its_key_is_cut(
    quick_vault: ServerThread,
) -> None:
    """The wait ends: the shred cuts the stalled download at its next confirmation, its
    hold on the key goes with it, and the next pass completes the erasure."""
    tenant = make_tenant(quick_vault.settings, quick_vault.database_url)
    with quick_vault.client() as http:
        ingest = create_key(http, tenant, ["ingest"])
        meta = uploaded(http, ingest, "caller", os.urandom(SIZE))
        reader = create_key(http, tenant, ["read"])
        privacy = create_key(http, tenant, ["erasure"])
        path = artefact_url("caller", meta["id"], "content")
        with _start_stalled_download(quick_vault, path, reader["secret"], "stalled-cut"):
            erasure = http.post(subject_url("caller", "erasure"), headers=auth(privacy))
            assert erasure.status_code == 202, erasure.text
            erasure_id = erasure.json()["id"]
            started = time.monotonic()

            def completed() -> bool:
                run_worker_pass(quick_vault)
                return _status(http, privacy, erasure_id) == "completed"

            assert wait_for(completed, timeout=15, interval=0.2)
            took = time.monotonic() - started
            receipt = http.get(f"/v1/erasures/{erasure_id}/receipt", headers=auth(privacy))
    assert receipt.status_code == 200, receipt.text
    assert took < 10  # a few 0.2 s checks, the cut and a pass or two: not the 60 s expiry


def test_an_erasure_no_transfer_holds_completes_in_one_pass(vault: ServerThread) -> None:
    """The negative: nothing streaming, nothing to wait for (production recheck): the
    first pass completes it, as before transfers were counted."""
    tenant = make_tenant(vault.settings, vault.database_url)
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        uploaded(http, app, "quiet", os.urandom(1024))
        assert put_record(http, app, "quiet", "profile", b'{"a": 1}').status_code == 201
        erasure = http.post(subject_url("quiet", "erasure"), headers=auth(privacy))
        assert erasure.status_code == 202, erasure.text
        run_worker_pass(vault)
        status = _status(http, privacy, erasure.json()["id"])
    assert status == "completed"


def _hold_erased_key(server: ServerThread, tenant_id: uuid.UUID, held_for: float) -> None:
    """A transfer_keys row (migration 0026) as a process that has since died left it:
    holding the tenant's artefact key for `held_for` seconds from now (negative: past)."""

    async def run() -> None:
        conn = await asyncpg.connect(server.database_url)
        try:
            await conn.execute(
                "INSERT INTO transfer_keys (tenant_id, transfer_id, data_key_id, held_until)"
                " SELECT tenant_id, $2, data_key_id, now() + make_interval(secs => $3)"
                " FROM artefacts WHERE tenant_id = $1",
                tenant_id, uuid.uuid4(), held_for,
            )  # fmt: skip
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.mark.parametrize(("held_for", "expected"), [(-1.0, "completed"), (60.0, "in_progress")])
def test_a_hold_on_the_key_counts_until_it_expires_by_the_clock(
    vault: ServerThread, held_for: float, expected: str
) -> None:
    """A process that died while streaming never deletes its row: once its held_until has
    passed (the longest it could have gone on unconfirmed) it holds nothing, and the
    erasure completes; before that it waits."""
    tenant = make_tenant(vault.settings, vault.database_url)
    with vault.client() as http:
        ingest = create_key(http, tenant, ["ingest"])
        privacy = create_key(http, tenant, ["erasure"])
        uploaded(http, ingest, "crashed", os.urandom(1024))
        _hold_erased_key(vault, tenant.id, held_for)
        erasure = http.post(subject_url("crashed", "erasure"), headers=auth(privacy))
        assert erasure.status_code == 202, erasure.text
        run_worker_pass(vault)
        status = _status(http, privacy, erasure.json()["id"])
    assert status == expected
