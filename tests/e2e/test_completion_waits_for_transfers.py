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

import gc
import os
import socket
import urllib.parse
import uuid
from collections.abc import Iterator

import pytest

from tests.api.helpers import access_log, artefact_url, auth, create_key, subject_url, uploaded
from tests.jobs import run_worker_pass
from tests.support import ServerThread, Tenant, make_tenant, private_server, read_response_head
from vault.services.keyring import DataKey

MIB = 1024 * 1024
SIZE = 16 * MIB


@pytest.fixture(scope="module")
def vault(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """The production recheck interval (10 s); no background jobs (run by hand)."""
    with private_server(pg_admin_url, tmp_path_factory.mktemp("completion-waits")) as server:
        yield server


@pytest.fixture
def own_tenant(vault: ServerThread) -> Tenant:
    return make_tenant(vault.settings, vault.database_url)


def _keys_in_memory(tenant: Tenant) -> int:
    """The tenant's unwrapped data keys anywhere in this process (the vault runs in it)."""
    gc.collect()
    return sum(
        1
        for o in gc.get_objects()
        if isinstance(o, DataKey) and o.subject_key.tenant_id == tenant.id
    )


@pytest.mark.xfail(
    strict=True,
    reason="red team: an erasure completes and its final receipt is issued while a "
    "running download still holds the data key",
)
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
            keys_held = _keys_in_memory(own_tenant)
    completed = shown.json()["status"] == "completed"
    assert not (completed and still_streaming), (
        f"completed with a download still streaming ({keys_held} data key(s) in memory); "
        f"receipt {receipt.status_code}"
    )
    assert not (receipt.status_code == 200 and still_streaming)
