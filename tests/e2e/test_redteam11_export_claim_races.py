"""Red team 11: an export whose next entry is destroyed while its ZIP is streaming.

Tenth review's fix (services/export.py `_record_members`): a batch's sealed values are
read together, and each record's data key is unwrapped only once `lease.claim` holds it,
in a transaction of its own after the claim. Two windows are left between the batch's
read and the unwrap: the record deleted or replaced (its version's data key destroyed:
API.md, a record's DELETE and PUT) before the claim, so the claim refuses the key
(KeyDestroyed), or after the claim and before the unwrap, so the unwrap finds it
destroyed (KeyDestroyed). The same for an artefact the manifest lists, deleted before the
ZIP writer reaches it (`locate`: NotFound). Either way the export's stream raises a
VaultError in the middle of the ZIP, after its head.

What the deletion guarantee needs held: nothing of the destroyed entry leaves, and the ZIP
is cut (no chunked terminator: never a ZIP that ends cleanly without an entry its
manifest lists). What fails: starlette's exception middleware finds a handler for the
VaultError but the response has started, raises RuntimeError, and the vault logs an
`unhandled_error` and records the export in the access log as 500, the vault's own
failure, where a watchdog's cut of the same export records 404 (docs/deletion-guarantee.md,
"Downloads in flight"). A tenant deleting records while its users export pages the
operator with errors, and the audit trail says the vault broke.

The windows are widened on purpose: the vault runs in this process (private_server), and
its lease's `claim` is wrapped here to pause before (or after) the real one.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.api.helpers import (
    access_log,
    artefact_url,
    auth,
    create_key,
    put_record,
    record_url,
    subject_url,
    uploaded,
)
from tests.support import ServerThread, make_tenant, module_private_server
from vault.services import transfers as transfer_service

PAUSE_SECONDS = 1.0


vault = module_private_server("rt11-export-claim")


def _paused_claim(monkeypatch: pytest.MonkeyPatch, *, before: bool) -> threading.Event:
    """Wrap TransferLease.claim: the first claim without a transaction (an export's
    record) pauses PAUSE_SECONDS before (or after) the real one, signalled by the
    returned event."""
    entered = threading.Event()
    real: Callable[..., Awaitable[None]] = transfer_service.TransferLease.claim

    async def claim(self: Any, data_key_id: uuid.UUID, conn: Any = None) -> None:
        if conn is not None or entered.is_set():
            await real(self, data_key_id, conn)
            return
        if not before:
            await real(self, data_key_id, conn)
        entered.set()
        await asyncio.sleep(PAUSE_SECONDS)
        if before:
            await real(self, data_key_id, conn)

    monkeypatch.setattr(transfer_service.TransferLease, "claim", claim)
    return entered


def _export_racing(
    vault: ServerThread,
    tenant_key: dict[str, Any],
    compliance: dict[str, Any],
    ref: str,
    entered: threading.Event,
    change: Callable[[], httpx.Response],
) -> tuple[bytes, list[int]]:
    """Export `ref` with `tenant_key`; once `entered`, make `change` (2xx). Returns what
    the client received and the statuses the access log recorded for the export."""
    host, port = urllib.parse.urlsplit(vault.base_url).netloc.split(":")
    request_id = f"rt11-export-{uuid.uuid4().hex}"
    received = b""
    with socket.create_connection((host, int(port)), timeout=5 + PAUSE_SECONDS) as sock:
        sock.sendall(
            f"GET {subject_url(ref, 'export')} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {tenant_key['secret']}\r\nX-Request-Id: {request_id}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        assert entered.wait(timeout=5), "the export never claimed its record's key"
        changed = change()
        assert changed.is_success, changed.text
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    with vault.client() as http:
        rows: list[dict[str, Any]] = []
        deadline = time.monotonic() + 3
        while not rows and time.monotonic() < deadline:
            time.sleep(0.1)  # the access-log row is written as the request unwinds
            rows = [
                row
                for row in access_log(http, compliance, api_key_id=tenant_key["id"])
                if row["request_id"] == request_id
            ]
    return received, sorted(row["status"] for row in rows)


@pytest.mark.parametrize("change", ["delete", "replace"])
@pytest.mark.parametrize("before", [True, False], ids=["before-claim", "after-claim"])
def test_an_export_whose_record_is_destroyed_around_its_claim_is_cut_and_logged_as_such(
    vault: ServerThread, monkeypatch: pytest.MonkeyPatch, before: bool, change: str
) -> None:
    """Attack: export a subject with one record; once the ZIP's head is out and the
    export is about to claim (or has just claimed) the record's key, delete (or replace)
    the record. Expected: the body never ends cleanly (a cut), and the access log's row
    for the export says why (not 500)."""
    tenant = make_tenant(vault.settings, vault.database_url)
    ref = f"claim-race-{change}-{before}"
    with vault.client() as http:
        ingest = create_key(http, tenant, ["ingest"])
        reader = create_key(http, tenant, ["read"])
        compliance = create_key(http, tenant, ["compliance"])
        stored = put_record(http, ingest, ref, "only", b'{"plan": "pro"}')
        assert stored.status_code == 201, stored.text
        entered = _paused_claim(monkeypatch, before=before)

        def destroy() -> httpx.Response:
            if change == "delete":
                return http.delete(record_url(ref, "only"), headers=auth(ingest))
            return put_record(http, ingest, ref, "only", b'{"plan": "free"}')

        received, statuses = _export_racing(vault, reader, compliance, ref, entered, destroy)
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    assert not received.endswith(b"\r\n0\r\n\r\n"), "the ZIP ended cleanly without its record"
    assert statuses and 500 not in statuses, statuses


def test_an_export_whose_artefact_is_deleted_before_its_entry_is_cut_and_logged_as_such(
    vault: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for an artefact the manifest lists, deleted while the export is on the
    record before it (no claim race: the watchdog's recheck is 10 s away)."""
    tenant = make_tenant(vault.settings, vault.database_url)
    ref = "artefact-race"
    with vault.client() as http:
        ingest = create_key(http, tenant, ["ingest"])
        reader = create_key(http, tenant, ["read"])
        compliance = create_key(http, tenant, ["compliance"])
        stored = put_record(http, ingest, ref, "only", b'{"plan": "pro"}')
        assert stored.status_code == 201, stored.text
        meta = uploaded(http, ingest, ref, os.urandom(4096))
        entered = _paused_claim(monkeypatch, before=True)

        def delete() -> httpx.Response:
            return http.delete(artefact_url(ref, meta["id"]), headers=auth(ingest))

        received, statuses = _export_racing(vault, reader, compliance, ref, entered, delete)
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    assert not received.endswith(b"\r\n0\r\n\r\n"), "the ZIP ended cleanly without its artefact"
    assert statuses and 500 not in statuses, statuses
