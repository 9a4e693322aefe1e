"""A transfer's confirmation writes its hold again, and stands behind the barrier too.

DESIGN.md, Deletion guarantees: "completed" means no process holds the key any more. A
transfer confirms its keys on the clock (services/transfers.py `confirm`, the named query
`still_live`), and in the same statement writes its rows in transfer_keys again if they
are missing (one lost with a database crash: answers' holds commit asynchronously). That
is a hold like any other, and every hold must stand where migration 0042 put them
against an erasure's completion: behind the tenant's transfer-holds lock, taken shared
before the keys are read, so the publisher's barrier waits for it.

Without that, a confirmation whose snapshot saw the key live wrote its row after the
barrier and the completion's look for holds had passed: the erasure was `completed`, its
receipt issued, while the download went on decrypting until its next check.

The window (the confirmation's snapshot to its commit) is widened on purpose: the
vault's `still_live` statement spends PAUSE_SECONDS after reading the keys, before it
ends. The vault runs in this process (private_server), so the statement is patched here.
"""

from __future__ import annotations

import asyncio
import os
import socket
import urllib.parse
import uuid

import asyncpg
import pytest

from tests.api.helpers import (
    access_log,
    artefact_url,
    create_key,
    uploaded,
    wait_for,
)
from tests.jobs import erase_and_run_worker
from tests.support import (
    ServerThread,
    SlowedQuery,
    data_keys_in_memory,
    make_tenant,
    module_private_server,
    paused_in_database,
    read_response_head,
    transfer_holds,
)
from vault.services import transfers as transfer_service

MIB = 1024 * 1024
SIZE = 16 * MIB  # more than the socket buffers hold for a client that stopped reading
RECHECK = 0.3
PAUSE_SECONDS = 3.0


# Transfers confirmed every RECHECK seconds; background jobs run by hand.
vault = module_private_server("confirm-barrier", transfer_recheck_seconds=RECHECK)


def _superuser(vault: ServerThread, statement: str, *args: object) -> str:
    async def run() -> str:
        conn = await asyncpg.connect(vault.database_url)
        try:
            assert await conn.fetchval(
                "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"
            )
            return str(await conn.execute(statement, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def test_a_confirmation_writing_its_hold_late_does_not_let_the_erasure_complete_past_it(
    vault: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: a download stalls; its row in transfer_keys is lost (deleted here, as a
    database crash loses an asynchronously committed one); its next confirmation reads
    the key live and writes the row again, and commits late (widened on purpose). The
    subject is erased meanwhile and the worker runs until the erasure completes.
    Expected: the erasure completes only once the download has been cut and no data key
    of the tenant is left in the vault's memory; its access-log row is written by then."""
    tenant = make_tenant(vault.settings, vault.database_url)
    # The confirmation's keys read, its statement not yet ended, for PAUSE_SECONDS (its
    # last SELECT has no FROM: the pause joins it as one).
    slow = SlowedQuery(
        transfer_service.Q,
        "still_live",
        lambda q: f"{q}\n FROM (SELECT pg_sleep({PAUSE_SECONDS})) pause",
    )
    monkeypatch.setattr(transfer_service, "Q", slow)
    with vault.client() as http:
        ingest = create_key(http, tenant, ["ingest"])
        meta = uploaded(http, ingest, "stalled", os.urandom(SIZE))
        reader = create_key(http, tenant, ["read"])
        privacy = create_key(http, tenant, ["erasure"])
        compliance = create_key(http, tenant, ["compliance"])
        # The upload's own hold is released in the background (batched): gone first.
        assert wait_for(
            lambda: transfer_holds(vault.database_url, tenant) == 0, timeout=5, interval=0.05
        )
        host, port = urllib.parse.urlsplit(vault.base_url).netloc.split(":")
        request_id = f"late-confirm-{uuid.uuid4().hex}"
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            sock.sendall(
                f"GET {artefact_url('stalled', meta['id'], 'content')} HTTP/1.1\r\n"
                f"Host: {host}\r\nAuthorization: Bearer {reader['secret']}\r\n"
                f"X-Request-Id: {request_id}\r\n\r\n".encode()
            )
            assert read_response_head(sock).startswith(b"HTTP/1.1 200")
            lost = _superuser(vault, "DELETE FROM transfer_keys WHERE tenant_id = $1", tenant.id)
            assert lost == "DELETE 1", lost  # the download's hold, and only it
            slow.armed.set()
            assert slow.entered.wait(timeout=10), "the download was never confirmed again"
            # The confirmation's statement at its pause: it has taken its snapshot.
            assert paused_in_database(vault.database_url), "the confirmation never paused"

            status, _ = erase_and_run_worker(
                vault, http, privacy, "stalled", until=("completed",), seconds=PAUSE_SECONDS + 15
            )
            keys_held = len(data_keys_in_memory(tenant))
            rows = access_log(http, compliance, api_key_id=reader["id"])
    assert status == "completed"
    assert keys_held == 0, f"completed with {keys_held} data key(s) of the subject in memory"
    assert any(row["request_id"] == request_id for row in rows), "the download was not cut"
