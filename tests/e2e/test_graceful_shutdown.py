"""SIGTERM to `datavault api` with an upload in flight (issue: operations, item 1).

Within the drain time the upload finishes and is stored while new connections are
already refused; past the drain time the upload is cut off and leaves nothing behind.
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

from tests.api.helpers import (
    MIB,
    DataKeys,
    auth,
    blob_root,
    data_keys,
    object_files,
    subject_url,
    wait_for,
)
from tests.support import (
    VaultProcess,
    make_tenant,
    running_server,
    vault_process,
)
from vault.config import Settings


def _api_process(
    settings: Settings, drain_seconds: float, log: Path
) -> AbstractContextManager[VaultProcess]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "DATAVAULT_DATA_DIR": str(settings.data_dir),
        "DATAVAULT_DRAIN_SECONDS": str(drain_seconds),
    }
    return vault_process(["api", "--host", "127.0.0.1"], env, log)


def _upload_head(url: str, secret: str, ref: str, length: int) -> bytes:
    host = url.removeprefix("http://")
    return (
        f"POST {subject_url(ref, 'artefacts')}?category=recording HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        f"Authorization: Bearer {secret}\r\n"
        f"Content-Type: video/mp4\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _refuses_new_connections(url: str) -> bool:
    try:
        httpx.get(f"{url}/healthz", timeout=1)
    except httpx.ConnectError:
        return True
    except httpx.TransportError:
        return False
    return False


def _keys(settings: Settings, url: str) -> DataKeys:
    tenant = make_tenant(settings, settings.database_url or "")
    with httpx.Client(base_url=url, timeout=30) as http:
        return data_keys(http, tenant)


def test_sigterm_lets_an_upload_in_flight_finish_and_refuses_new_connections(
    private_vault: Settings, tmp_path: Path
) -> None:
    body = os.urandom(4 * MIB)
    ref = f"caller-{uuid.uuid4().hex[:10]}"
    log = tmp_path / "api.log"
    with _api_process(private_vault, drain_seconds=30, log=log) as api:
        process, url = api.process, api.url
        keys = _keys(private_vault, url)
        with _connect(url) as sock:
            sock.sendall(_upload_head(url, keys.ingest["secret"], ref, len(body)))
            sock.sendall(body[: 2 * MIB])
            time.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            # The listening socket closes at once; the upload's connection stays.
            assert wait_for(lambda: _refuses_new_connections(url), timeout=10)
            sock.sendall(body[2 * MIB :])
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
        assert process.wait(timeout=30) == 0, log.read_text()
    assert "Application shutdown complete" in log.read_text()

    url = private_vault.database_url or ""
    with running_server(private_vault, url) as server, server.client() as http:
        listed = http.get(subject_url(ref, "artefacts"), headers=auth(keys.read)).json()
        [artefact] = listed["items"]
        content = http.get(
            subject_url(ref, f"artefacts/{artefact['id']}/content"), headers=auth(keys.read)
        )
    assert content.status_code == 200
    assert content.content == body


def test_upload_still_running_when_the_drain_time_ends_leaves_nothing(
    private_vault: Settings, tmp_path: Path
) -> None:
    ref = f"caller-{uuid.uuid4().hex[:10]}"
    log = tmp_path / "api.log"
    root = blob_root(private_vault)
    with _api_process(private_vault, drain_seconds=1, log=log) as api:
        process, url = api.process, api.url
        keys = _keys(private_vault, url)
        before = object_files(root)
        with _connect(url) as sock:
            sock.sendall(_upload_head(url, keys.ingest["secret"], ref, 8 * MIB))
            sock.sendall(os.urandom(3 * MIB))
            time.sleep(0.3)
            stopped_at = time.monotonic()
            process.send_signal(signal.SIGTERM)
            # The client never sends the rest; the drain time bounds the wait for it.
            assert process.wait(timeout=30) == 0, log.read_text()
            assert time.monotonic() - stopped_at < 15
    assert "Application shutdown complete" in log.read_text()
    assert not object_files(root) - before

    url = private_vault.database_url or ""
    with running_server(private_vault, url) as server, server.client() as http:
        listed = http.get(subject_url(ref, "artefacts"), headers=auth(keys.read))
    assert listed.status_code == 404 or listed.json()["items"] == []
