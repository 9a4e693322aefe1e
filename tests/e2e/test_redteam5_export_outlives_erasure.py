"""Red team 5: a stalled export of a subject's records outlives the subject's erasure.

DESIGN.md, Deletion guarantees: downloads already streaming are cut within 60 s of the
shred, by the clock, whether or not the client is reading; "completed" means no process
holds the key any more. An export decrypts its records a batch at a time
(vault/services/export.py, `_RECORD_BATCH` = 8) and drops their keys before handing the
values on, so its transfer lease holds no data key and no subject read while those values
wait for a client that stopped reading: the clock checks only the API key. The erasure
completes, and once the client reads again it gets the erased records' plaintext, and
the whole ZIP. (The same export runs on through a restriction of processing.) A download
of an artefact in the same situation is cut (tests/e2e/test_transfer_cut.py).
"""

from __future__ import annotations

import base64
import os
import socket
import time
import urllib.parse
import uuid

import pytest

from tests.api.helpers import access_log, auth, create_key, subject_url, wait_for
from tests.jobs import run_worker_pass
from tests.support import (
    ServerThread,
    make_tenant,
    module_private_server,
    read_response_head,
)
from vault.services.export import _RECORD_BATCH

RECHECK = 0.2
RECORD_CHARS = 1_000_000  # each record close to the 1 MiB limit
# The client's receive buffer, set before connecting so the window it offers stays small.
CLIENT_RCVBUF = 32 * 1024


def _server_send_buffer_max() -> int:
    """The most the kernel lets the server's socket buffer for a stalled client (Linux
    autotunes a send buffer up to tcp_wmem's maximum)."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as limits:
            return int(limits.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 16 * 1024 * 1024


# More records than the server's send buffer, the client's receive buffer and uvicorn's
# write buffer take together, whatever this host's limits, so the export stalls in the
# vault holding plaintext; and a whole number of the export's fetch batches, so the
# stall falls in the last one, past the access check each batch's fetch makes: what is
# cut then is cut by the transfer's clock, the mechanism under test.
_PAST_BUFFERS = _server_send_buffer_max() // RECORD_CHARS + 3
RECORDS = -(-_PAST_BUFFERS // _RECORD_BATCH) * _RECORD_BATCH


# A short transfer recheck (as tests/e2e/test_transfer_cut.py) and no background jobs.
vault = module_private_server("redteam5-export", transfer_recheck_seconds=RECHECK)


def _stalled_get(server: ServerThread, path: str, token: str, request_id: str) -> socket.socket:
    host, port = urllib.parse.urlsplit(server.base_url).netloc.split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
    sock.settimeout(10)
    sock.connect((host, int(port)))
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"X-Request-Id: {request_id}\r\n\r\n".encode()
    )
    return sock


def _read_rest(sock: socket.socket, received: bytes) -> tuple[bytes, str]:
    sock.settimeout(5)
    try:
        while chunk := sock.recv(256 * 1024):
            received += chunk
    except ConnectionResetError:
        return received, "reset"
    except TimeoutError:
        return received, "open"
    return received, "eof"


@pytest.mark.parametrize("withdrawn_by", ["erasure", "restriction"])
def test_a_stalled_export_of_records_is_cut_once_its_subject_is_erased_or_restricted(
    vault: ServerThread, withdrawn_by: str
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    ref = f"exported-{uuid.uuid4().hex[:8]}"
    request_id = f"redteam5-export-{uuid.uuid4().hex}"
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        compliance = create_key(http, tenant, ["compliance"])
        markers = []
        for n in range(RECORDS):
            marker = f"erased-record-{n}-{uuid.uuid4().hex}"
            filler = base64.b64encode(os.urandom(RECORD_CHARS * 3 // 4)).decode()
            put = http.put(
                subject_url(ref, "records", f"r{n}") + "?category=account",
                json={"marker": marker, "filler": filler},
                headers=auth(app),
            )
            assert put.status_code == 201, put.text
            markers.append(marker)

        sock = _stalled_get(vault, subject_url(ref, "export"), app["secret"], request_id)
        with sock:
            head = read_response_head(sock)
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
            time.sleep(4 * RECHECK)  # stalled: the server's buffers fill, its send waits
            # Not logged yet: the export is still running, stalled in the vault (RECORDS
            # is sized past this host's socket buffers).
            assert not any(r["request_id"] == request_id for r in access_log(http, compliance))

            if withdrawn_by == "erasure":
                erasure = http.post(subject_url(ref, "erasure"), headers=auth(privacy))
                assert erasure.status_code == 202, erasure.text
                erasure_url = f"/v1/erasures/{erasure.json()['id']}"

                def completed() -> bool:
                    # The shred, then completion once no transfer holds a shredded key:
                    # the export's hold keeps it waiting until the clock has cut it.
                    run_worker_pass(vault)
                    status = http.get(erasure_url, headers=auth(privacy)).json()["status"]
                    return bool(status == "completed")

                assert wait_for(completed, timeout=10)
            else:
                restricted = http.post(
                    subject_url(ref, "restriction"),
                    json={"reason": "accuracy contested"},
                    headers=auth(compliance),
                )
                assert restricted.status_code == 200, restricted.text
            time.sleep(20 * RECHECK)  # many rechecks after the shred
            received, ended = _read_rest(sock, head.partition(b"\r\n\r\n")[2])
        rows = [r for r in access_log(http, compliance) if r["request_id"] == request_id]

    # What a client may have had in its socket buffers before the shred (or the
    # restriction) is beyond the vault; the rest of the records must not arrive after it.
    delivered = [m for m in markers if m.encode() in received]
    complete = ended == "eof" and _is_whole_zip(received)
    assert not complete, (
        f"the whole export arrived after the {withdrawn_by} ({len(delivered)} records)"
    )
    assert ended in ("reset", "eof")
    assert rows and rows[0]["status"] != 200


def _is_whole_zip(body: bytes) -> bool:
    """The body is chunked: a whole ZIP ends with its end-of-central-directory record,
    then the last (empty) chunk."""
    return b"PK\x05\x06" in body[-4096:] and body.endswith(b"0\r\n\r\n")
