"""Red team 12: an export lets go of a record's key (and deletes its row in
transfer_keys, b3174b1) while that record's plaintext is still in the vault, unsent.

`_LastRecordHeld` keeps one record held until the next is: "the ZIP writer asks for the
next entry while up to a chunk of the previous one is still on its way". But stream_zip
buffers its output into 64 KiB chunks (`async_stream_zip(chunk_size=65536)`): records
smaller than that are pulled one after another, each letting go of the one before,
before a single byte of them is yielded. Since b3174b1 a let-go key's row is deleted at
once (before: it lingered up to 60 s), so an erasure that shreds the earlier record's
key completes (`held`, with its receipt) while that record's plaintext is still waiting
in the export's buffer; the watchdog confirms only the key still held (a kept billing
record, readable by the compliance caller) and the export goes on to send the shredded
record's plaintext after the receipt.

Window widened on purpose (tests/support.py `SlowedQuery`): the export's next member,
an artefact, is located by a statement paused for PAUSE_SECONDS. Natural without it: any
query after the records (the next batch of 8 records, an artefact's locate) or a
stalled client while the buffered chunk waits to be sent.
"""

from __future__ import annotations

import json
import socket
import urllib.parse
import uuid

import pytest

from tests.api.helpers import create_key, put_record, subject_url, uploaded
from tests.jobs import erase_and_run_worker
from tests.support import (
    ServerThread,
    SlowedQuery,
    make_tenant,
    module_private_server,
    read_response_head,
)
from vault.services import artefacts as artefact_service

RECHECK = 0.2
PAUSE_SECONDS = 4.0
SETTLE_SECONDS = 3.0


vault = module_private_server("rt12-let-go", transfer_recheck_seconds=RECHECK)


def _paused(query: str) -> str:
    # SELECT * FROM dv_artefact_read(...) → the same row, after a pause.
    return (
        query.replace("SELECT *", "SELECT r.*", 1).replace(
            "FROM ", f"FROM (SELECT pg_sleep({PAUSE_SECONDS})) pause, ", 1
        )
        + " r"
    )


def _drain(sock: socket.socket, quiet: float) -> bytes:
    """What has arrived, read until nothing more comes for `quiet` seconds."""
    sock.settimeout(quiet)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except TimeoutError:
        pass
    return got


def test_a_shredded_records_plaintext_is_not_sent_after_the_erasure_is_held(
    vault: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: a compliance export of a subject with a small account record, a small
    billing record and a billing artefact; while the export locates the artefact (the
    two records decrypted; what the ZIP writer flushed meanwhile is drained first: that
    left before the erasure) the subject is erased (account shredded, billing kept by
    retention) and the worker runs. Expected: the export, which holds every key it
    decrypted with until its end, is cut; the erasure is `held` only then, and nothing
    of the account record arrives after the erasure was asked for. (Measured at merge:
    the two records' entries were flushed before the artefact's lookup, so the review's
    premise that they waited unsent in a 64 KiB buffer did not hold here; every key is
    held to the export's end all the same.)"""
    tenant = make_tenant(vault.settings, vault.database_url)
    ref = "rt12-let-go-unsent"
    marker = f"account-{uuid.uuid4().hex}"
    slow = SlowedQuery(artefact_service.Q, "read", _paused)
    monkeypatch.setattr(artefact_service, "Q", slow)
    with vault.client() as http:
        ingest = create_key(http, tenant, ["ingest"])
        compliance = create_key(http, tenant, ["compliance"])
        privacy = create_key(http, tenant, ["erasure"])
        value = json.dumps({"marker": marker}).encode()
        assert put_record(http, ingest, ref, "a-account", value).status_code == 201
        bill = b'{"invoice": 1}'
        assert put_record(http, ingest, ref, "b-bill", bill, category="billing").status_code == 201
        uploaded(http, ingest, ref, b"invoice pdf", category="billing")
        host, port = urllib.parse.urlsplit(vault.base_url).netloc.split(":")
        with socket.create_connection((host, int(port)), timeout=15) as sock:
            slow.armed.set()
            sock.sendall(
                f"GET {subject_url(ref, 'export')} HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {compliance['secret']}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            head = read_response_head(sock)
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
            assert slow.entered.wait(timeout=5), "the export never located its artefact"
            assert marker.encode() not in head  # nothing of the records sent yet
            # What the vault sent before the erasure was asked for is the client's (here:
            # the two records' entries, flushed while the artefact is looked up).
            _drain(sock, 0.5)
            status, _ = erase_and_run_worker(vault, http, privacy, ref, seconds=SETTLE_SECONDS)
            sock.settimeout(15)
            after = b""
            cut = False
            try:
                while chunk := sock.recv(65536):
                    after += chunk
            except ConnectionResetError:
                cut = True
    # The erasure went through once the export, which held the account key it had
    # decrypted with until its end, was cut...
    assert status == "held", status
    assert cut or not after.endswith(b"\r\n0\r\n\r\n"), "the export ran on to its end"
    # ...and nothing of the account record left the vault after it.
    assert marker.encode() not in after
