"""Red team 10: a confirmation drops a hold its own transfer took while it ran.

DESIGN.md, Deletion guarantees: "completed" means no process holds the key any more. A
transfer's confirmation (services/transfers.py `confirm`, the named query `still_live`)
renews its rows in transfer_keys for the keys the lease holds and deletes the others
("dropped for those it no longer holds"). Which keys it holds is read once, when the
confirmation starts (`held = sorted(self._data_keys)`), before it waits for a pooled
connection, for the barrier lock and for its statement; the DELETE then runs with a
snapshot of its own, taken later. A hold the same transfer committed in between (its
read statement's `dv_transfer_hold`, or `claim` for an export's next item) is not in
`held`, so the confirmation deletes the row that hold had just written, and the
transfer goes on decrypting under a key no row holds until its next confirmation, one
recheck later. An erasure shredding that key completes in between.

Naturally the window is a confirmation overlapping a read of the same transfer: a read
that waited about a recheck (10 s in production) for a pooled connection, or an export's
next member claimed while the export's confirmation is in flight. Here it is widened on
purpose, in a vault running in this process: the download's read statement (artefacts
`read_held`) pauses before it holds the key, so the confirmation due meanwhile reads
`held` empty; that confirmation pauses before its barrier lock (`behind_barrier`) until
the read's hold has committed; the next confirmation pauses again, before it writes the
row back, long enough for the erasure to run.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.parse
import uuid

import pytest

from tests.api.helpers import artefact_url, create_key, uploaded, wait_for
from tests.jobs import erase_and_run_worker
from tests.support import (
    ServerThread,
    SlowedQuery,
    data_keys_in_memory,
    make_tenant,
    module_private_server,
    read_response_head,
    transfer_holds,
)
from vault.services import artefacts as artefact_service
from vault.services import transfers as transfer_service

MIB = 1024 * 1024
SIZE = 16 * MIB  # more than the socket buffers hold for a client that stopped reading
RECHECK = 1.0
# The read's hold commits this long after the request began: after the first
# confirmation started (RECHECK), before that confirmation's statement runs.
READ_PAUSE = 1.5
# The first confirmation's statement runs this long after it started.
FIRST_CONFIRM_PAUSE = 1.5
# The next confirmation writes the row back only this long after it started: the
# erasure's window.
NEXT_CONFIRM_PAUSE = 5.0


vault = module_private_server("rt10-fresh-hold", transfer_recheck_seconds=RECHECK)


def test_a_hold_taken_while_a_confirmation_runs_keeps_the_erasure_from_completing(
    vault: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: a download whose read statement commits its hold while its first
    confirmation is in flight; the reader stalls; the subject is erased and the worker
    run until the erasure completes. Expected: the erasure is not `completed` while the
    stalled download still holds the subject's data key in the vault's memory (it waits
    for the download's cut)."""
    tenant = make_tenant(vault.settings, vault.database_url)
    pause = [FIRST_CONFIRM_PAUSE]
    slow_confirm = SlowedQuery(
        transfer_service.Q,
        "behind_barrier",
        # The pause before the lock is taken: the barrier never waits for it.
        lambda q: f"{q}\n FROM (SELECT pg_sleep({pause[0]})) pause",
    )
    slow_read = SlowedQuery(
        artefact_service.Q,
        "read_held",
        # Before the read statement's dv_transfer_hold: its seconds argument waits.
        lambda q: q.replace("$6,", f"$6::float8 + (SELECT 0 FROM pg_sleep({READ_PAUSE})),"),
    )
    monkeypatch.setattr(transfer_service, "Q", slow_confirm)
    monkeypatch.setattr(artefact_service, "Q", slow_read)
    with vault.client() as http:
        ingest = create_key(http, tenant, ["ingest"])
        meta = uploaded(http, ingest, "fresh-hold", os.urandom(SIZE))
        reader = create_key(http, tenant, ["read"])
        privacy = create_key(http, tenant, ["erasure"])
        assert wait_for(
            lambda: transfer_holds(vault.database_url, tenant) == 0, timeout=5, interval=0.05
        )
        host, port = urllib.parse.urlsplit(vault.base_url).netloc.split(":")
        with socket.create_connection((host, int(port)), timeout=15) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            slow_read.armed.set()
            slow_confirm.armed.set()
            began = time.monotonic()
            sock.sendall(
                f"GET {artefact_url('fresh-hold', meta['id'], 'content')} HTTP/1.1\r\n"
                f"Host: {host}\r\nAuthorization: Bearer {reader['secret']}\r\n"
                f"X-Request-Id: rt10-{uuid.uuid4().hex}\r\n\r\n".encode()
            )
            assert slow_confirm.entered.wait(timeout=10), "no confirmation was due"
            pause[0] = NEXT_CONFIRM_PAUSE
            slow_confirm.entered.clear()
            slow_confirm.armed.set()  # the next confirmation, before it writes the row back
            assert read_response_head(sock).startswith(b"HTTP/1.1 200")  # then stalled
            assert slow_read.entered.is_set()
            # The first confirmation has run its statement (READ_PAUSE + its pause).
            time.sleep(max(0.0, began + RECHECK + FIRST_CONFIRM_PAUSE + 0.3 - time.monotonic()))
            holds_while_stalled = transfer_holds(vault.database_url, tenant)

            # Until the next confirmation has written the row back (or cut the download).
            deadline = began + 2 * RECHECK + FIRST_CONFIRM_PAUSE + NEXT_CONFIRM_PAUSE - 0.5
            status, _ = erase_and_run_worker(
                vault, http, privacy, "fresh-hold", until=("completed",), deadline=deadline
            )
            keys_held = len(data_keys_in_memory(tenant)) if status == "completed" else 0
    assert keys_held == 0, (
        f"erasure {status} with {keys_held} data key(s) of the subject in the vault's memory "
        f"(rows holding them while the download stalled: {holds_while_stalled})"
    )
