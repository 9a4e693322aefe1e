"""Red team 11: a key an export let go still holds back the erasure that shredded it.

Tenth review's fix (vault/db/queries/transfers.sql `still_live`): a confirmation no
longer deletes the rows of keys its transfer let go; they stop being renewed and expire
by the clock (HELD_FOR_SECONDS, 60 s) or go when the transfer ends. An erasure becomes
`completed` or `held` only once no unexpired row holds a key it shredded (erasures.sql
`awaiting_ledger`). So a transfer that used a subject's key, let go of it, and runs on
(an export by a compliance key: it may read on what retention keeps) makes the erasure
wait for that row's clock: up to 60 s after the key's last renewal, although the vault
has held neither the key nor anything decrypted under it since the export moved on.
Before the fix the next confirmation (10 s) deleted the row. docs/deletion-guarantee.md
says of the case only that "its row expires within 60 s"; the row's bound reads "With a
stalled download that is one recheck (10 s) and a publisher pass later".

Natural cases, no window widened: an account record, then billing records (kept by the
default statutory retention) large enough to stall a client that stopped reading; the
erasure keeps the billing records (`held`), or, for the subject's second life, keeps
nothing (`completed`: DESIGN.md, within a minute of not_before). Measured without the
limit: `held` after 59.1 s, `completed` after 59.2 s, the export holding no account key.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.parse

from tests.api.helpers import create_key, put_record, subject_url
from tests.jobs import erase_and_run_worker
from tests.support import (
    ServerThread,
    Tenant,
    data_keys_in_memory,
    make_tenant,
    module_private_server,
    read_response_head,
)

RECHECK = 0.2
BILLING_RECORDS = 7
RECORD_BYTES = 900 * 1024
# Several rechecks and worker passes: what the erasure should wait for a transfer that
# no longer holds its key (the doc's "one recheck and a publisher pass").
SETTLE_SECONDS = 4.0


vault = module_private_server("rt11-let-go", transfer_recheck_seconds=RECHECK)


def _account_keys_in_memory(tenant: Tenant) -> int:
    return sum(1 for key in data_keys_in_memory(tenant) if key.subject_key.category == "account")


def test_an_erasure_is_not_held_back_by_a_key_the_stalled_export_let_go(
    vault: ServerThread,
) -> None:
    """Attack: a compliance export reads the subject's account record, moves on to large
    billing records and stalls there; the subject is erased (account shredded, billing
    kept) and the worker runs. Expected: the erasure is `held` within a few rechecks and
    passes, as the export holds no shredded key (asserted: none in memory)."""
    tenant = make_tenant(vault.settings, vault.database_url)
    ref = "let-go-export"
    with vault.client() as http:
        ingest = create_key(http, tenant, ["ingest"])
        compliance = create_key(http, tenant, ["compliance"])
        privacy = create_key(http, tenant, ["erasure"])
        stored = put_record(http, ingest, ref, "a-account", b'{"plan": "pro"}', category="account")
        assert stored.status_code == 201, stored.text
        for index in range(BILLING_RECORDS):
            value = json.dumps({"invoice": os.urandom(RECORD_BYTES // 2).hex()}).encode()
            stored = put_record(http, ingest, ref, f"b-bill-{index}", value, category="billing")
            assert stored.status_code == 201, stored.text
        host, port = urllib.parse.urlsplit(vault.base_url).netloc.split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            sock.sendall(
                f"GET {subject_url(ref, 'export')} HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {compliance['secret']}\r\n\r\n".encode()
            )
            assert read_response_head(sock).startswith(b"HTTP/1.1 200")
            time.sleep(5 * RECHECK)  # stalled on a billing record: the buffers are full
            status, waited = erase_and_run_worker(vault, http, privacy, ref, seconds=SETTLE_SECONDS)
            account_keys = _account_keys_in_memory(tenant)
    assert account_keys == 0  # the export let go of the account key before the erasure
    assert status in ("held", "completed"), f"still {status} after {waited:.1f} s"


def test_a_second_life_erasure_is_not_held_back_by_a_key_the_stalled_export_let_go(
    vault: ServerThread,
) -> None:
    """The same for an erasure that keeps nothing (DESIGN.md: completes within a minute
    of not_before; the doc's "one recheck and a publisher pass"): the subject's first
    life erased with its billing kept, a second life's account record written, then a
    compliance export reads that account record (the second life), moves on to the
    first life's large kept billing records and stalls; the second life is erased
    (nothing kept). Expected: `completed` within a few rechecks and passes."""
    tenant = make_tenant(vault.settings, vault.database_url)
    ref = "second-life-export"
    with vault.client() as http:
        ingest = create_key(http, tenant, ["ingest"])
        compliance = create_key(http, tenant, ["compliance"])
        privacy = create_key(http, tenant, ["erasure"])
        for index in range(BILLING_RECORDS):
            value = json.dumps({"invoice": os.urandom(RECORD_BYTES // 2).hex()}).encode()
            stored = put_record(http, ingest, ref, f"b-bill-{index}", value, category="billing")
            assert stored.status_code == 201, stored.text
        first, _ = erase_and_run_worker(vault, http, privacy, ref, seconds=SETTLE_SECONDS)
        assert first == "held", first  # billing kept by retention
        stored = put_record(http, ingest, ref, "a-account", b'{"plan": "pro"}', category="account")
        assert stored.status_code == 201, stored.text
        host, port = urllib.parse.urlsplit(vault.base_url).netloc.split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            sock.sendall(
                f"GET {subject_url(ref, 'export')} HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {compliance['secret']}\r\n\r\n".encode()
            )
            assert read_response_head(sock).startswith(b"HTTP/1.1 200")
            time.sleep(5 * RECHECK)  # stalled on a first-life billing record
            status, waited = erase_and_run_worker(vault, http, privacy, ref, seconds=SETTLE_SECONDS)
            account_keys = _account_keys_in_memory(tenant)
    assert account_keys == 0  # the export let go of the account key before the erasure
    assert status == "completed", f"still {status} after {waited:.1f} s"
