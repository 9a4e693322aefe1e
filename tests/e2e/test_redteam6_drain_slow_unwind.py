"""Red team 6: a download cut by the drain's end whose unwinding outlasts the access-log
writer's 5 s stop wait is never logged, though its plaintext went out.

The fifth review's fix (vault/services/access_log.py, STOP_WAIT_SECONDS) has the writer
wait up to 5 s for requests still unwinding after uvicorn cancelled them, then stop. A
cancelled download unwinds through its transfer's release (vault/http/transfers.py:
`watch.stop()` closes the lease, one DELETE on transfer_keys) before the access-log
middleware sees the cancellation and writes its 503 row. A database that is slow at that
moment (here: another transaction holding the transfer's row lock for 10 s, as a long
erasure's completion check or a vacuum might) keeps the release waiting past 5 s: the
writer stops, and the row, queued afterwards, is never committed. DESIGN.md, "Access log":
a request that cannot be logged fails (503): no unlogged access; this one's bytes were
already sent.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
import uuid
from contextlib import AbstractContextManager
from pathlib import Path

import asyncpg
import httpx

from tests.api.helpers import MIB, artefact_url, auth, data_keys, upload
from tests.support import VaultProcess, make_tenant, running_server, vault_process
from vault.config import Settings

LOCK_SECONDS = 10.0  # longer than the writer's 5 s stop wait plus the 1 s drain


def _api_process(settings: Settings, log: Path) -> AbstractContextManager[VaultProcess]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "DATAVAULT_DATA_DIR": str(settings.data_dir),
        "DATAVAULT_DRAIN_SECONDS": "1",
    }
    return vault_process(["api", "--host", "127.0.0.1"], env, log)


def _hold_transfer_rows(url: str, locked: threading.Event) -> None:
    """Another transaction holding every transfer_keys row's lock for LOCK_SECONDS."""

    async def go() -> None:
        conn = await asyncpg.connect(url)
        try:
            async with conn.transaction():
                rows = await conn.fetch("SELECT transfer_id FROM transfer_keys FOR UPDATE")
                assert rows, "the download holds its key in transfer_keys"
                locked.set()
                await asyncio.sleep(LOCK_SECONDS)
        finally:
            await conn.close()

    asyncio.run(go())


def test_a_download_cut_by_shutdown_is_logged_even_when_its_release_is_slow(
    private_vault: Settings, tmp_path: Path
) -> None:
    ref = f"drained-slow-{uuid.uuid4().hex[:10]}"
    request_id = f"redteam6-drain-{uuid.uuid4().hex}"
    url = private_vault.database_url or ""
    with _api_process(private_vault, tmp_path / "api.log") as api:
        tenant = make_tenant(private_vault, url)
        with httpx.Client(base_url=api.url, timeout=60) as http:
            keys = data_keys(http, tenant)
            stored = upload(http, keys.ingest, ref, os.urandom(16 * MIB))
            assert stored.status_code == 201, stored.text
            artefact_id = stored.json()["id"]
        host, port = api.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
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
            locked = threading.Event()
            locker = threading.Thread(target=_hold_transfer_rows, args=(url, locked))
            locker.start()
            assert locked.wait(timeout=30)
            api.process.send_signal(signal.SIGTERM)
            time.sleep(LOCK_SECONDS / 2)
            locker.join(timeout=60)
            assert api.process.wait(timeout=60) == 0

    with running_server(private_vault, url) as server, server.client() as http:
        rows = http.get(
            "/v1/access-log",
            params={"subject_ref": ref, "limit": 500},
            headers=auth(keys.compliance),
        )
    assert rows.status_code == 200, rows.text
    downloads = [row for row in rows.json()["items"] if row["request_id"] == request_id]
    assert len(downloads) == 1, "the download cut by the shutdown is not in the access log"
    assert downloads[0]["bytes"] > 0
