"""Red team 6: a seek's plaintext goes out after its subject's erasure completed.

DESIGN.md, Deletion guarantees: "completed" means no process holds the key any more, and
downloads already streaming are cut within 60 s by the clock, whether or not the client
is reading. A read answered in one message (a bounded range of at most 1 MiB, migration
0032) decrypts its range whole, releases its transfer hold in its access-log row's
commit, and only then sends the answer. A client that stops reading keeps that decrypted
range in the vault (uvicorn waits for its write buffer to drain before writing the
answer), with no hold and no clock watching it: the erasure completes, its receipt is
issued, and when the client reads again the vault sends the range's plaintext.

Shown with HTTP/1.1 pipelining: several 1 MiB seeks on one connection whose client does
not read. They are served one after the other; the last one whose access-log row
committed (its range decrypted, its hold released) is the one waiting in the vault for
the client (the next one would have been logged had it been written out). Its bytes
arrive after the erasure completed. (An export in the same situation is cut since the
fifth review: tests/e2e/test_redteam5_export_outlives_erasure.py.) A record read is
answered the same way (its value decrypted, its row logged, then written out; it holds no
transfer at all) and shows the same.
"""

from __future__ import annotations

import base64
import os
import socket
import time
import urllib.parse
import uuid

from tests.api.helpers import (
    access_log,
    artefact_url,
    auth,
    create_key,
    subject_url,
    uploaded,
    wait_for,
)
from tests.e2e.stalled_clients import erasure_completes, read_what_arrives
from tests.support import ServerThread, make_tenant, module_private_server
from vault.services.artefacts import WHOLE_ANSWER_BYTES

RECHECK = 0.2
RECORD_CHARS = 1_000_000  # each record's value close to the 1 MiB limit
CLIENT_RCVBUF = 32 * 1024


def _server_send_buffer_max() -> int:
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as limits:
            return int(limits.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 16 * 1024 * 1024


# More seeks than the host's socket buffers take, so that some of them wait in the vault.
SEEKS = _server_send_buffer_max() // WHOLE_ANSWER_BYTES + 4


vault = module_private_server("redteam6-seek", transfer_recheck_seconds=RECHECK)


def _logged(rows: list[dict[str, object]], request_ids: list[str]) -> list[str]:
    seen = {row["request_id"] for row in rows}
    return [rid for rid in request_ids if rid in seen]


def test_a_stalled_seek_does_not_deliver_plaintext_after_the_erasure_completed(
    vault: ServerThread,
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    ref = f"seeked-{uuid.uuid4().hex[:8]}"
    plaintext = os.urandom(SEEKS * WHOLE_ANSWER_BYTES)
    request_ids = [f"redteam6-seek-{n}-{uuid.uuid4().hex}" for n in range(SEEKS)]
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        compliance = create_key(http, tenant, ["compliance"])
        artefact = uploaded(http, app, ref, plaintext)
        path = artefact_url(ref, artefact["id"], "content")

        host, port = urllib.parse.urlsplit(vault.base_url).netloc.split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
        sock.connect((host, int(port)))
        with sock:
            # Every seek at once, pipelined; nothing read.
            sock.sendall(
                b"".join(
                    f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
                    f"Authorization: Bearer {app['secret']}\r\n"
                    f"Range: bytes={n * WHOLE_ANSWER_BYTES}-{(n + 1) * WHOLE_ANSWER_BYTES - 1}"
                    f"\r\nX-Request-Id: {rid}\r\n\r\n".encode()
                    for n, rid in enumerate(request_ids)
                )
            )
            # Served until the buffers are full: then the count of logged seeks is stable.
            counts: list[int] = []

            def settled() -> bool:
                counts.append(len(_logged(access_log(http, compliance, limit=500), request_ids)))
                return len(counts) >= 4 and counts[-1] == counts[-4] and counts[-1] > 0

            assert wait_for(settled, timeout=20, interval=0.3)
            logged = counts[-1]
            assert logged < SEEKS, "every seek went out: the socket buffers took them all"
            waiting = logged - 1  # decrypted, released, its answer not written out yet

            erasure = http.post(subject_url(ref, "erasure"), headers=auth(privacy))
            assert erasure.status_code == 202, erasure.text
            erasure_url = f"/v1/erasures/{erasure.json()['id']}"

            assert erasure_completes(vault, http, erasure_url, privacy, timeout=20)
            time.sleep(20 * RECHECK)  # many transfer rechecks after the completion

            received = read_what_arrives(sock)

    waiting_range = plaintext[waiting * WHOLE_ANSWER_BYTES : (waiting + 1) * WHOLE_ANSWER_BYTES]
    assert waiting_range not in received, (
        f"seek {waiting} of {SEEKS} (decrypted, its hold released, not yet written out when "
        "the erasure completed) arrived whole after the erasure's completion"
    )


def test_a_stalled_record_read_does_not_deliver_plaintext_after_the_erasure_completed(
    vault: ServerThread,
) -> None:
    """The same with the records API: a record's value (at most 1 MiB of JSON) is
    decrypted, logged and then written out; read N times pipelined, the one waiting in the
    vault when the erasure completes arrives afterwards."""
    tenant = make_tenant(vault.settings, vault.database_url)
    ref = f"recorded-{uuid.uuid4().hex[:8]}"
    request_ids = [f"redteam6-record-{n}-{uuid.uuid4().hex}" for n in range(SEEKS)]
    markers = [f"erased-record-{n}-{uuid.uuid4().hex}" for n in range(SEEKS)]
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        compliance = create_key(http, tenant, ["compliance"])
        for n, marker in enumerate(markers):
            filler = base64.b64encode(os.urandom(RECORD_CHARS * 3 // 4)).decode()
            put = http.put(
                subject_url(ref, "records", f"r{n}") + "?category=account",
                json={"marker": marker, "filler": filler},
                headers=auth(app),
            )
            assert put.status_code == 201, put.text

        host, port = urllib.parse.urlsplit(vault.base_url).netloc.split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
        sock.connect((host, int(port)))
        with sock:
            sock.sendall(
                b"".join(
                    f"GET {subject_url(ref, 'records', f'r{n}')} HTTP/1.1\r\nHost: {host}\r\n"
                    f"Authorization: Bearer {app['secret']}\r\nX-Request-Id: {rid}\r\n\r\n".encode()
                    for n, rid in enumerate(request_ids)
                )
            )
            counts: list[int] = []

            def settled() -> bool:
                counts.append(len(_logged(access_log(http, compliance, limit=500), request_ids)))
                return len(counts) >= 4 and counts[-1] == counts[-4] and counts[-1] > 0

            assert wait_for(settled, timeout=20, interval=0.3)
            logged = counts[-1]
            assert logged < SEEKS, "every read went out: the socket buffers took them all"
            waiting = logged - 1

            erasure = http.post(subject_url(ref, "erasure"), headers=auth(privacy))
            assert erasure.status_code == 202, erasure.text
            erasure_url = f"/v1/erasures/{erasure.json()['id']}"

            assert erasure_completes(vault, http, erasure_url, privacy, timeout=20)
            time.sleep(20 * RECHECK)

            received = read_what_arrives(sock)

    assert markers[waiting].encode() not in received, (
        f"record {waiting} of {SEEKS} (decrypted and logged, not yet written out when the "
        "erasure completed) arrived after the erasure's completion"
    )
