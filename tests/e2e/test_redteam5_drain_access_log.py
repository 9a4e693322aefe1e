"""Red team 5: a download still streaming when SIGTERM's drain time runs out.

DESIGN.md, "Access log": every request is logged, and "a request that cannot be logged
fails (503): no unlogged access". The drain (DATAVAULT_DRAIN_SECONDS) ends with uvicorn
cancelling the requests still running; a download the client reads slowly is one of them.
Its plaintext has already gone out (the status line and the first segments), but the
cancellation passes the access-log middleware without a row: the compliance team's
search for who read the subject's data does not show it.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from contextlib import AbstractContextManager
from pathlib import Path

import httpx

from tests.api.helpers import MIB, artefact_url, auth, data_keys, subject_url, upload
from tests.support import VaultProcess, make_tenant, running_server, vault_process
from vault.config import Settings


def _api_process(settings: Settings, log: Path) -> AbstractContextManager[VaultProcess]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "DATAVAULT_DATA_DIR": str(settings.data_dir),
        "DATAVAULT_DRAIN_SECONDS": "1",
    }
    return vault_process(["api", "--host", "127.0.0.1"], env, log)


def test_a_download_cut_by_shutdown_is_in_the_access_log(
    private_vault: Settings, tmp_path: Path
) -> None:
    ref = f"drained-{uuid.uuid4().hex[:10]}"
    request_id = f"redteam5-drain-{uuid.uuid4().hex}"
    with _api_process(private_vault, tmp_path / "api.log") as api:
        tenant = make_tenant(private_vault, private_vault.database_url or "")
        with httpx.Client(base_url=api.url, timeout=60) as http:
            keys = data_keys(http, tenant)
            stored = upload(http, keys.ingest, ref, os.urandom(16 * MIB))
            assert stored.status_code == 201, stored.text
            artefact_id = stored.json()["id"]
        host, port = api.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            # A reader that stops reading: the download is still streaming at the deadline.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(
                (
                    f"GET {artefact_url(ref, artefact_id, 'content')} HTTP/1.1\r\n"
                    f"Host: {host}\r\nX-Request-Id: {request_id}\r\n"
                    f"Authorization: Bearer {keys.read['secret']}\r\n\r\n"
                ).encode()
            )
            head = sock.recv(65536)
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
            time.sleep(0.5)
            api.process.send_signal(signal.SIGTERM)
            assert api.process.wait(timeout=60) == 0

    # Plaintext went out under the read key: the access log must say so.
    url = private_vault.database_url or ""
    with running_server(private_vault, url) as server, server.client() as http:
        rows = http.get(
            "/v1/access-log",
            params={"subject_ref": ref, "limit": 500},
            headers=auth(keys.compliance),
        )
    assert rows.status_code == 200, rows.text
    downloads = [row for row in rows.json()["items"] if row["request_id"] == request_id]
    assert len(downloads) == 1, "the download cut by the shutdown is not in the access log"
    [row] = downloads
    assert row["api_key_id"] == keys.read["id"]
    assert row["bytes"] > 0


def test_an_upload_cut_by_shutdown_is_in_the_access_log(
    private_vault: Settings, tmp_path: Path
) -> None:
    """The other direction: an upload still sending its body at the drain's end is
    cancelled too, and its row says it was cut (503) with the bytes received."""
    ref = f"drained-up-{uuid.uuid4().hex[:10]}"
    request_id = f"redteam5-drain-up-{uuid.uuid4().hex}"
    sent = MIB
    with _api_process(private_vault, tmp_path / "api.log") as api:
        tenant = make_tenant(private_vault, private_vault.database_url or "")
        with httpx.Client(base_url=api.url, timeout=60) as http:
            keys = data_keys(http, tenant)
        host, port = api.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(
                (
                    f"POST {subject_url(ref, 'artefacts')}?category=recording HTTP/1.1\r\n"
                    f"Host: {host}\r\nX-Request-Id: {request_id}\r\n"
                    f"Authorization: Bearer {keys.ingest['secret']}\r\n"
                    f"Content-Type: application/octet-stream\r\n"
                    f"Content-Length: {16 * MIB}\r\n\r\n"
                ).encode()
            )
            sock.sendall(os.urandom(sent))  # then nothing more: still uploading at the deadline
            time.sleep(0.5)
            api.process.send_signal(signal.SIGTERM)
            assert api.process.wait(timeout=60) == 0

    url = private_vault.database_url or ""
    with running_server(private_vault, url) as server, server.client() as http:
        rows = http.get(
            "/v1/access-log",
            params={"api_key_id": keys.ingest["id"], "limit": 500},
            headers=auth(keys.compliance),
        )
        listed = http.get(subject_url(ref, "artefacts"), headers=auth(keys.read))
    assert rows.status_code == 200, rows.text
    uploads = [row for row in rows.json()["items"] if row["request_id"] == request_id]
    assert len(uploads) == 1, "the upload cut by the shutdown is not in the access log"
    [row] = uploads
    assert row["status"] == 503
    assert 0 < row["bytes_in"] <= sent
    # Cut, not stored.
    assert listed.status_code in (200, 404)
    assert listed.status_code == 404 or listed.json()["items"] == []
