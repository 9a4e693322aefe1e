"""Red team 10: an export unwraps a batch of records' data keys before it holds them.

DESIGN.md, Deletion guarantees: no process holds a destroyed key longer than 60 s, and
"completed" (or "held", for what retention keeps) means no process holds a shredded key
any more. An export streams the subject's records eight at a time
(services/export.py `_record_members`): `_sealed_records` reads and unwraps the data keys
of the whole batch in one transaction, and each record's key is claimed in
transfer_keys (`lease.claim`) and watched only when the ZIP writer asks for that record.
The keys of the batch's later records sit unwrapped in the export's generator with no
row in transfer_keys and outside the lease's confirmations: while the client stalls on
an earlier record, an erasure shreds them and completes past them (nothing holds them,
as far as the database knows), and no confirmation ever cuts the export for them (the
key it confirms, the earlier record's, is live). The export holds the shredded key for
as long as the client stalls: past the erasure's end, and past 60 s. The same with a
read key and no erasure at all: a later record deleted (or replaced) while the export
stalls; its destroyed key stays in the export's batch.

The natural case, no window widened: an export by a compliance key (which may go on
reading what retention keeps after an erasure: a read-scope export is cut by the read
path once the erasure is requested), billing records (kept by the default statutory
retention, so their keys are not shredded) large enough to stall a client that stopped
reading, then an account record in the same batch of eight.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import urllib.parse
import uuid

import asyncpg

from tests.api.helpers import auth, create_key, put_record, record_url, subject_url
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
# Billing records that, stored uncompressed in the ZIP, fill what the kernel and the
# vault buffer for a client that stopped reading.
BILLING_RECORDS = 7
RECORD_BYTES = 900 * 1024


vault = module_private_server("rt10-export-keys", transfer_recheck_seconds=RECHECK)


def _account_keys_in_memory(tenant: Tenant) -> int:
    return sum(1 for key in data_keys_in_memory(tenant) if key.subject_key.category == "account")


def test_a_stalled_export_holds_no_shredded_key_once_the_erasure_has_ended(
    vault: ServerThread,
) -> None:
    """Attack: export (compliance scope) a subject with seven large billing records and
    one account record, stall after the head, erase the subject and run the worker
    until the erasure ends (held: billing is kept by retention). Expected: by then the
    vault holds no account key of the subject (the export is cut, or never unwrapped
    it)."""
    tenant = make_tenant(vault.settings, vault.database_url)
    ref = "export-staller"
    with vault.client() as http:
        ingest = create_key(http, tenant, ["ingest"])
        compliance = create_key(http, tenant, ["compliance"])
        privacy = create_key(http, tenant, ["erasure"])
        for index in range(BILLING_RECORDS):
            value = json.dumps({"invoice": os.urandom(RECORD_BYTES // 2).hex()}).encode()
            stored = put_record(http, ingest, ref, f"a-bill-{index}", value, category="billing")
            assert stored.status_code == 201, stored.text
        stored = put_record(http, ingest, ref, "z-account", b'{"plan": "pro"}', category="account")
        assert stored.status_code == 201, stored.text
        host, port = urllib.parse.urlsplit(vault.base_url).netloc.split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            sock.sendall(
                f"GET {subject_url(ref, 'export')} HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {compliance['secret']}\r\n\r\n".encode()
            )
            assert read_response_head(sock).startswith(b"HTTP/1.1 200")
            time.sleep(10 * RECHECK)  # stalled on a billing record: the buffers are full
            unclaimed_before = _account_keys_in_memory(tenant)

            status, _ = erase_and_run_worker(vault, http, privacy, ref, seconds=10)
            assert status in ("held", "completed"), status
            time.sleep(5 * RECHECK)  # several confirmations of the stalled export
            held_after = _account_keys_in_memory(tenant)
    assert held_after == 0, (
        f"erasure {status}; the stalled export still holds {held_after} shredded account "
        f"key(s) (unwrapped before the erasure: {unclaimed_before})"
    )


def test_a_stalled_export_lets_go_of_a_record_key_destroyed_by_its_deletion(
    vault: ServerThread,
) -> None:
    """The same with any read key and no erasure: a later record of the batch deleted
    (its data key destroyed: API.md, a record's DELETE; a replacement shreds the old
    version alike) while the export stalls on an earlier one. Expected: the vault lets go
    of the destroyed key within the clock's bound (here: a few confirmations; DESIGN.md:
    60 s), as it does for the keys it confirms."""
    tenant = make_tenant(vault.settings, vault.database_url)
    ref = "export-deleted-record"
    with vault.client() as http:
        ingest = create_key(http, tenant, ["ingest"])
        reader = create_key(http, tenant, ["read"])
        for index in range(BILLING_RECORDS):
            value = json.dumps({"note": os.urandom(RECORD_BYTES // 2).hex()}).encode()
            stored = put_record(http, ingest, ref, f"a-note-{index}", value, category="account")
            assert stored.status_code == 201, stored.text
        stored = put_record(http, ingest, ref, "z-late", b'{"plan": "pro"}', category="account")
        assert stored.status_code == 201, stored.text
        late_key = asyncio.run(_record_key(vault, tenant, "z-late"))
        host, port = urllib.parse.urlsplit(vault.base_url).netloc.split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            sock.sendall(
                f"GET {subject_url(ref, 'export')} HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {reader['secret']}\r\n\r\n".encode()
            )
            assert read_response_head(sock).startswith(b"HTTP/1.1 200")
            time.sleep(10 * RECHECK)  # stalled on an earlier record: the buffers are full
            unwrapped_before = _in_memory(tenant, late_key)
            deleted = http.delete(record_url(ref, "z-late"), headers=auth(ingest))
            assert deleted.status_code == 204, deleted.text
            time.sleep(15 * RECHECK)  # 15 confirmations of the stalled export
            held_after = _in_memory(tenant, late_key)
    assert held_after == 0, (
        f"the stalled export still holds the deleted record's destroyed key "
        f"(unwrapped before the deletion: {unwrapped_before})"
    )


def _in_memory(tenant: Tenant, key_id: uuid.UUID) -> int:
    return sum(1 for key in data_keys_in_memory(tenant) if key.id == key_id)


async def _record_key(vault: ServerThread, tenant: Tenant, name: str) -> uuid.UUID:
    conn = await asyncpg.connect(vault.database_url)
    try:
        found = await conn.fetchval(
            "SELECT data_key_id FROM records WHERE tenant_id = $1 AND name = $2 AND current",
            tenant.id,
            name,
        )
        assert isinstance(found, uuid.UUID)
        return found
    finally:
        await conn.close()
