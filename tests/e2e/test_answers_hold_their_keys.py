"""Every answer that carries data decrypted with a subject's key is a transfer, not only
content and record values (tests/e2e/test_redteam6_seek_outlives_erasure.py).

DESIGN.md, Deletion guarantees: "completed" means no process holds the key any more. A
JSON answer is one message, written after its access-log row commits; one that carries
decrypted metadata (a listing of a subject's artefacts with their filenames, a listing
of disclosures with their descriptions and their subjects' references) waits in the
vault for as long as a client that stopped reading makes it wait. It must hold the keys
it decrypted with until it has left, so that the subject's erasure completes only once
it is out, or cuts it: never the answer arriving after the erasure's `completed`.

Shown with HTTP/1.1 pipelining as for the seek: N groups of requests on one connection
whose client does not read, served one after the other until the socket buffers are
full. Group n is a listing of BASE + n items and the single reads of its last item (its
metadata, its HEAD; the disclosure), so that item's marker is in no earlier answer: the
last request logged (its data decrypted, its answer not yet written out) is the one
waiting in the vault, and its group's marker must not arrive after the completion.
"""

from __future__ import annotations

import socket
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.api.helpers import (
    access_log,
    artefact_url,
    auth,
    create_key,
    put_record,
    rfc3339,
    subject_url,
    uploaded,
    wait_for,
)
from tests.e2e.stalled_clients import erasure_completes, read_what_arrives
from tests.support import ServerThread, make_tenant, module_private_server
from vault.domain.disclosures import MAX_DESCRIPTION_LENGTH

RECHECK = 0.2
CLIENT_RCVBUF = 32 * 1024
FILENAME_CHARS = 255  # X-Filename's limit: the longest decrypted item a listing has
CONTENT_TYPE_CHARS = 255


def _server_send_buffer_max() -> int:
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as limits:
            return int(limits.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 16 * 1024 * 1024


# What the pipelined answers add up to: twice what the host's socket buffers take (the
# server's send buffer at its largest, the client's receive buffer), so some wait in the
# vault whatever the buffers grow to.
PIPELINED_BYTES = 2 * _server_send_buffer_max() + CLIENT_RCVBUF


def _listings(base: int, item_bytes: int) -> int:
    """How many listings of BASE, BASE+1, ... items add up to PIPELINED_BYTES."""
    count, total = 0, 0
    while total < PIPELINED_BYTES:
        total += (base + count) * item_bytes
        count += 1
    return count


vault = module_private_server("answer-holds", transfer_recheck_seconds=RECHECK)


@dataclass(frozen=True)
class Listing:
    path: str  # without its limit
    key: dict[str, Any]
    markers: list[str]  # the items' decrypted markers, in the listing's order
    ids: list[str]  # the items' ids, in the same order
    # The single reads of an item, by its id: (method, path).
    reads: Callable[[str], list[tuple[str, str]]]


def _pipelined_listings_outlive_erasure(
    vault: ServerThread,
    http: httpx.Client,
    listing: Listing,
    base: int,
    erase: Callable[[], str],
    compliance: dict[str, Any],
    privacy: dict[str, Any],
) -> tuple[bytes, int, str]:
    """Pipeline groups of requests: a listing of base, base+1, ... items, then the
    single reads of its last item; once the count of logged ones is stable, erase the
    subject and wait for the erasure's completion; then read what the connection still
    delivers. Returns it, the index of the group whose request was waiting in the vault,
    and which request that was."""
    count = len(listing.markers) - base + 1
    separator = "&" if "?" in listing.path else "?"
    requests = [
        (group, method, path)
        for group in range(count)
        for method, path in [
            ("GET", f"{listing.path}{separator}limit={base + group}"),
            *listing.reads(listing.ids[base + group - 1]),
        ]
    ]
    request_ids = [f"answer-holds-{n}-{uuid.uuid4().hex}" for n in range(len(requests))]
    host, port = urllib.parse.urlsplit(vault.base_url).netloc.split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
    sock.connect((host, int(port)))
    with sock:
        sock.sendall(
            b"".join(
                f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {listing.key['secret']}\r\nX-Request-Id: {rid}\r\n"
                "\r\n".encode()
                for (_, method, path), rid in zip(requests, request_ids, strict=True)
            )
        )
        counts: list[int] = []

        def settled() -> bool:
            seen = {row["request_id"] for row in access_log(http, compliance, limit=500)}
            counts.append(sum(rid in seen for rid in request_ids))
            return len(counts) >= 4 and counts[-1] == counts[-4] and counts[-1] > 0

        assert wait_for(settled, timeout=30, interval=0.3)
        logged = counts[-1]
        assert logged < len(requests), "every answer went out: the socket buffers took them all"

        erasure_url = erase()

        assert erasure_completes(vault, http, erasure_url, privacy, timeout=30)
        time.sleep(20 * RECHECK)  # many transfer rechecks after the completion

        received = read_what_arrives(sock)
    group, method, path = requests[logged - 1]
    kind = "the listing" if "limit=" in path else f"the single {method}"
    return received, group, f"{kind} of group {group} of {count}"


def test_a_stalled_artefact_listing_does_not_deliver_filenames_after_the_erasure(
    vault: ServerThread,
) -> None:
    """listArtefacts decrypts every item's metadata (filename, checksums) with the
    artefact's data key: the page holds each of them, in one statement. getArtefact
    (the metadata) and a HEAD of the content (the filename in Content-Disposition)
    hold the one key they decrypt with."""
    tenant = make_tenant(vault.settings, vault.database_url)
    ref = f"listed-{uuid.uuid4().hex[:8]}"
    base = 100
    item_bytes = FILENAME_CHARS + CONTENT_TYPE_CHARS + 300  # id, times, checksums, names
    total = base + _listings(base, item_bytes) - 1
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        compliance = create_key(http, tenant, ["compliance"])
        content_type = "application/x-" + "t" * (CONTENT_TYPE_CHARS - len("application/x-"))
        for n in range(total):
            marker = f"erased-name-{n}-{uuid.uuid4().hex}-"
            uploaded(
                http, app, ref, b"x", content_type=content_type,
                filename=marker + "f" * (FILENAME_CHARS - len(marker)),
            )  # fmt: skip
        listed = http.get(
            subject_url(ref, "artefacts"), params={"limit": total}, headers=auth(app)
        ).json()["items"]
        listing = Listing(
            subject_url(ref, "artefacts"), app, [item["filename"].rstrip("f") for item in listed],
            [item["id"] for item in listed],
            lambda item: [
                ("GET", artefact_url(ref, item)), ("HEAD", artefact_url(ref, item, "content"))
            ],
        )  # fmt: skip
        assert len(listing.markers) == total

        def erase() -> str:
            erasure = http.post(subject_url(ref, "erasure"), headers=auth(privacy))
            assert erasure.status_code == 202, erasure.text
            return f"/v1/erasures/{erasure.json()['id']}"

        received, waiting, what = _pipelined_listings_outlive_erasure(
            vault, http, listing, base, erase, compliance, privacy
        )
    marker = listing.markers[base + waiting - 1]
    assert marker.encode() not in received, (
        f"{what} (its filenames decrypted and logged, not yet written "
        "out when the erasure completed) arrived after the erasure's completion"
    )


def test_a_stalled_disclosure_listing_does_not_deliver_descriptions_after_the_erasure(
    vault: ServerThread,
) -> None:
    """listDisclosures opens the descriptions and subject references of disclosures
    about many subjects: the page holds every subject's identity key it opens with, in
    one statement. The one erased is interleaved with another that is not. getDisclosure
    holds the keys of its one disclosure."""
    tenant = make_tenant(vault.settings, vault.database_url)
    erased_ref, kept_ref = f"disclosed-{uuid.uuid4().hex[:8]}", f"kept-{uuid.uuid4().hex[:8]}"
    base = 30
    item_bytes = MAX_DESCRIPTION_LENGTH + 500
    total = base + _listings(base, item_bytes) - 1
    now = datetime.now(UTC)
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        officer = create_key(http, tenant, ["compliance"])
        for ref in (erased_ref, kept_ref):
            written = put_record(http, app, ref, "profile", b'{"plan": "basic"}')
            assert written.status_code == 201, written.text
        for n in range(total):
            # Newest first (n = 0 is the newest). Among the newest BASE - 1, every fifth is
            # about the subject that stays: every listing spans two subjects, and the one
            # item only listing n has (index BASE + n - 1) is about the erased subject.
            ref = kept_ref if n < base - 1 and n % 5 == 4 else erased_ref
            marker = f"erased-description-{n}-{uuid.uuid4().hex}-" if ref == erased_ref else ""
            recorded = http.post(
                "/v1/disclosures",
                json={
                    "subject_ref": ref, "recipient": "Politie Eenheid Amsterdam",
                    "legal_basis": "Art. 126nd Sv (vordering)", "reference": f"PV-{n}",
                    "categories": ["account"],
                    "disclosed_at": rfc3339(now - timedelta(days=1, seconds=n)),
                    "description": marker + "d" * (MAX_DESCRIPTION_LENGTH - len(marker)),
                },
                headers=auth(officer),
            )  # fmt: skip
            assert recorded.status_code == 201, recorded.text
        listed = http.get("/v1/disclosures", params={"limit": total}, headers=auth(officer))
        items = listed.json()["items"]
        assert [item["subject_ref"] for item in items[base - 1 :]] == [erased_ref] * (
            total - base + 1
        )
        listing = Listing(
            "/v1/disclosures", officer, [item["description"].rstrip("d") for item in items],
            [item["id"] for item in items], lambda item: [("GET", f"/v1/disclosures/{item}")],
        )  # fmt: skip

        def erase() -> str:
            erasure = http.post(subject_url(erased_ref, "erasure"), headers=auth(privacy))
            assert erasure.status_code == 202, erasure.text
            return f"/v1/erasures/{erasure.json()['id']}"

        received, waiting, what = _pipelined_listings_outlive_erasure(
            vault, http, listing, base, erase, officer, privacy
        )
    marker = listing.markers[base + waiting - 1]
    assert marker.encode() not in received, (
        f"{what} (descriptions decrypted and logged, not yet written "
        "out when the erasure completed) arrived after the erasure's completion"
    )
