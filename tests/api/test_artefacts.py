"""/v1/subjects/{ref}/artefacts: streamed upload and download, ranges, listing, deletion,
scopes and integrity of the stored ciphertext (API.md "Artefacts", "Scopes"; DESIGN.md
"Key hierarchy", "Deletion guarantees", "Failure behaviour")."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import socket
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from crypto._message import MessageFormat
from crypto._primitives import random_bytes
from crypto._stream_layout import STREAM_V1, STREAM_V2, STREAM_V3
from crypto.limits import DEFAULT_SEGMENT_SIZE
from crypto.records import RECORD_V1, RECORD_V2, _seal_record_with, seal_record
from crypto.stream import _encrypt_stream_with
from tests.api.helpers import (
    MIB,
    DataKeys,
    access_log,
    artefact_url,
    auth,
    blob_files,
    blob_root,
    chunks_of,
    data_keys,
    download,
    object_files,
    parse_time,
    sha256_hex,
    subject_url,
    upload,
    uploaded,
    wait_for,
)
from tests.support import (
    ServerThread,
    Tenant,
    make_tenant,
    problem,
    read_response_head,
    running_server,
)
from vault.config import Settings
from vault.runtime import operator_context
from vault.services.keyring import artefact_object

ARTEFACT_FIELDS = {
    "id",
    "subject_ref",
    "subject_ref_hash",
    "category",
    "content_type",
    "filename",
    "size",
    "sha256",
    "created_at",
    "expires_at",
}
BIG_SIZE = 3 * MIB + MIB // 2  # 3.5 MiB: three full 1 MiB segments and a half one


def _ref() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


def _gone(status: int) -> bool:
    return status in (404, 410)


@dataclasses.dataclass(frozen=True)
class Stored:
    ref: str
    data: bytes
    meta: dict[str, Any]
    keys: DataKeys

    @property
    def content(self) -> str:
        return artefact_url(self.ref, self.meta["id"], "content")


@pytest.fixture(scope="module")
def big(server: ServerThread, settings: Settings, database_url: str) -> Stored:
    """One 3.5 MiB artefact, uploaded once for the read-only range tests."""
    tenant = make_tenant(settings, database_url)
    data = os.urandom(BIG_SIZE)
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        meta = uploaded(http, keys.ingest, ref, data, content_type="video/mp4")
    return Stored(ref, data, meta, keys)


# --- upload and download ------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [0, 1, MIB, MIB + 1, BIG_SIZE],
    ids=["empty", "one-byte", "one-segment", "one-segment-plus-one", "3.5-mib"],
)
def test_upload_then_download_round_trips_bytes_size_and_sha256(
    server: ServerThread, tenant: Tenant, size: int
) -> None:
    data = os.urandom(size)
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        created = upload(http, keys.ingest, ref, data, content_type="application/octet-stream")
        assert created.status_code == 201, created.text
        meta = created.json()
        fetched = http.get(artefact_url(ref, meta["id"]), headers=auth(keys.read))
        content = http.get(artefact_url(ref, meta["id"], "content"), headers=auth(keys.read))
    assert set(meta) >= ARTEFACT_FIELDS, sorted(meta)
    uuid.UUID(meta["id"])
    assert meta["subject_ref"] == ref
    assert re.fullmatch(r"[0-9a-f]{64}", meta["subject_ref_hash"]), meta["subject_ref_hash"]
    assert meta["category"] == "recording"
    assert meta["size"] == size
    assert meta["sha256"] == sha256_hex(data)
    assert meta["created_at"].endswith("Z")
    parse_time(meta["created_at"])
    assert fetched.status_code == 200, fetched.text
    assert fetched.json() == meta
    assert content.status_code == 200, content.text
    assert content.headers["Content-Length"] == str(size)
    assert content.headers["Content-Type"].startswith("application/octet-stream")
    assert content.headers["Accept-Ranges"] == "bytes"
    assert re.fullmatch(r'(W/)?"[^"]+"', content.headers["ETag"]), content.headers["ETag"]
    assert len(content.content) == size
    assert sha256_hex(content.content) == meta["sha256"]
    assert content.content == data


def test_content_type_defaults_to_octet_stream(server: ServerThread, tenant: Tenant) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        meta = uploaded(http, keys.ingest, ref, b"no type given")
        content = http.get(artefact_url(ref, meta["id"], "content"), headers=auth(keys.read))
    assert meta["content_type"] == "application/octet-stream"
    assert meta["filename"] is None
    assert content.headers["Content-Type"].startswith("application/octet-stream")


def test_content_type_and_ascii_filename_are_kept(server: ServerThread, tenant: Tenant) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        meta = uploaded(
            http,
            keys.ingest,
            ref,
            b"OggS fake",
            content_type="audio/ogg",
            filename="call-2024-05-01.ogg",
        )
        again = http.get(artefact_url(ref, meta["id"]), headers=auth(keys.read))
        content = http.get(artefact_url(ref, meta["id"], "content"), headers=auth(keys.read))
    assert meta["content_type"] == "audio/ogg"
    assert meta["filename"] == "call-2024-05-01.ogg"
    assert again.json()["filename"] == "call-2024-05-01.ogg"
    assert content.headers["Content-Type"].startswith("audio/ogg")


def test_non_ascii_filename_in_rfc_8187_encoding_is_decoded_and_kept(
    server: ServerThread, tenant: Tenant
) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        meta = uploaded(
            http,
            keys.ingest,
            ref,
            b"\x00\x00\x00\x18ftypmp42",
            content_type="video/mp4",
            filename="UTF-8''na%C3%AFve%20%E2%82%AC.mp4",
        )
        again = http.get(artefact_url(ref, meta["id"]), headers=auth(keys.read))
    assert meta["filename"] == "naïve €.mp4"
    assert again.json()["filename"] == "naïve €.mp4"


def test_chunked_upload_without_content_length_is_stored(
    server: ServerThread, tenant: Tenant
) -> None:
    data = os.urandom(2 * MIB + 12_345)
    sizes = [1, 1000, 65_536, MIB, 7, MIB // 3]

    def body() -> Iterator[bytes]:
        start = 0
        for index in range(10_000):
            size = sizes[index % len(sizes)]
            if start >= len(data):
                return
            yield data[start : start + size]
            start += size

    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        meta = uploaded(http, keys.ingest, ref, body())
        content = http.get(artefact_url(ref, meta["id"], "content"), headers=auth(keys.read))
    assert meta["size"] == len(data)
    assert meta["sha256"] == sha256_hex(data)
    assert content.content == data


@pytest.mark.parametrize(
    ("category", "field"),
    [(None, "category"), ("recordings", "category"), ("Recording", "category"), ("", "category")],
    ids=["missing", "unknown", "upper-case", "empty"],
)
def test_upload_without_a_known_category_is_422_and_stores_nothing(
    server: ServerThread, tenant: Tenant, category: str | None, field: str
) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        response = upload(http, keys.ingest, ref, b"payload", category=category)
        listed = http.get(subject_url(ref, "artefacts"), headers=auth(keys.read))
    assert response.status_code == 422, response.text
    errors = problem(response).get("errors")
    assert field in [e.get("field") for e in errors or []], response.text
    assert listed.status_code == 404 or listed.json()["items"] == [], listed.text


@pytest.mark.parametrize("category", ["recording", "transcript", "account", "billing", "support"])
def test_upload_in_every_built_in_category_is_201(
    server: ServerThread, tenant: Tenant, category: str
) -> None:
    with server.client() as http:
        keys = data_keys(http, tenant)
        meta = uploaded(http, keys.ingest, _ref(), b"x", category=category)
    assert meta["category"] == category


def test_unknown_artefact_id_is_404(server: ServerThread, tenant: Tenant) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        uploaded(http, keys.ingest, ref, b"exists")
        responses = [
            http.get(artefact_url(ref, str(uuid.uuid4())), headers=auth(keys.read)),
            http.get(artefact_url(ref, str(uuid.uuid4()), "content"), headers=auth(keys.read)),
            http.get(artefact_url(ref, "not-a-uuid"), headers=auth(keys.read)),
            http.delete(artefact_url(ref, str(uuid.uuid4())), headers=auth(keys.ingest)),
        ]
    for response in responses:
        assert response.status_code == 404, response.text
        problem(response)


# --- ranges -------------------------------------------------------------------------------

N = BIG_SIZE


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        (f"bytes={N - 1}-{N - 1}", N - 1, N - 1),
        ("bytes=-500", N - 500, N - 1),
        ("bytes=-1", N - 1, N - 1),
        ("bytes=3000000-", 3_000_000, N - 1),
        ("bytes=1048570-1048580", 1_048_570, 1_048_580),
        ("bytes=1048575-2097152", MIB - 1, 2 * MIB),
        (f"bytes={MIB}-{2 * MIB - 1}", MIB, 2 * MIB - 1),
        (f"bytes=0-{N - 1}", 0, N - 1),
        ("bytes=0-", 0, N - 1),
        (f"bytes=100-{N + 10_000}", 100, N - 1),
        (f"bytes=-{N + 10_000}", 0, N - 1),
    ],
    ids=[
        "first-byte",
        "last-byte",
        "suffix-500",
        "suffix-1",
        "open-end",
        "across-segment-boundary",
        "across-two-boundaries",
        "exactly-second-segment",
        "whole-by-range",
        "whole-open-end",
        "end-beyond-size-is-clamped",
        "suffix-longer-than-object",
    ],
)
def test_single_range_is_206_with_content_range(
    server: ServerThread, big: Stored, header: str, start: int, end: int
) -> None:
    with server.client() as http:
        response = http.get(big.content, headers={**auth(big.keys.read), "Range": header})
    assert response.status_code == 206, response.text
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{N}"
    assert response.headers["Content-Length"] == str(end - start + 1)
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.content == big.data[start : end + 1]


@pytest.mark.parametrize(
    "header", [f"bytes={N}-", f"bytes={N + 10}-{N + 20}", f"bytes={N}-{N}", "bytes=-0"]
)
def test_unsatisfiable_range_is_416_with_the_size(
    server: ServerThread, big: Stored, header: str
) -> None:
    with server.client() as http:
        response = http.get(big.content, headers={**auth(big.keys.read), "Range": header})
    assert response.status_code == 416, response.text
    assert response.headers["Content-Range"] == f"bytes */{N}"
    assert big.data[:64] not in response.content


def test_any_range_of_an_empty_artefact_is_416(server: ServerThread, tenant: Tenant) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        meta = uploaded(http, keys.ingest, ref, b"")
        url = artefact_url(ref, meta["id"], "content")
        ranged = http.get(url, headers={**auth(keys.read), "Range": "bytes=0-0"})
        whole = http.get(url, headers=auth(keys.read))
    assert ranged.status_code == 416
    assert ranged.headers["Content-Range"] == "bytes */0"
    assert whole.status_code == 200
    assert whole.content == b""


@pytest.mark.parametrize(
    "header",
    [
        "bytes=0-0,5-9",
        "bytes=0-10, 2000000-2000010",
        "bytes=abc",
        "bytes=5-2",
        "lines=0-5",
        "bytes 0-5",
        "bytes=",
        "bytes=-",
    ],
    ids=[
        "multi",
        "multi-spaced",
        "garbage",
        "last-before-first",
        "other-unit",
        "no-equals",
        "empty-set",
        "lone-dash",
    ],
)
def test_multi_or_malformed_range_gets_the_whole_body(
    server: ServerThread, big: Stored, header: str
) -> None:
    with server.client() as http:
        response = http.get(big.content, headers={**auth(big.keys.read), "Range": header})
    assert response.status_code == 200, response.text
    assert "Content-Range" not in response.headers
    assert response.headers["Content-Length"] == str(N)
    assert response.content == big.data


def test_head_gives_the_headers_and_no_body(server: ServerThread, big: Stored) -> None:
    with server.client() as http:
        get = http.get(big.content, headers=auth(big.keys.read))
        head = http.head(big.content, headers=auth(big.keys.read))
        ranged = http.head(big.content, headers={**auth(big.keys.read), "Range": "bytes=10-19"})
    assert head.status_code == 200
    assert head.content == b""
    for name in ("Content-Length", "Content-Type", "ETag", "Accept-Ranges"):
        assert head.headers[name] == get.headers[name], name
    assert ranged.status_code == 206
    assert ranged.content == b""
    assert ranged.headers["Content-Range"] == f"bytes 10-19/{N}"
    assert ranged.headers["Content-Length"] == "10"


def test_etag_is_stable_and_differs_between_artefacts(
    server: ServerThread, big: Stored, tenant: Tenant
) -> None:
    with server.client() as http:
        first = http.head(big.content, headers=auth(big.keys.read))
        second = http.get(big.content, headers=auth(big.keys.read))
        ranged = http.get(big.content, headers={**auth(big.keys.read), "Range": "bytes=0-9"})
        keys = data_keys(http, tenant)
        other_ref = _ref()
        other = uploaded(http, keys.ingest, other_ref, b"another object")
        other_head = http.head(
            artefact_url(other_ref, other["id"], "content"), headers=auth(keys.read)
        )
    assert first.headers["ETag"] == second.headers["ETag"] == ranged.headers["ETag"]
    assert other_head.headers["ETag"] != first.headers["ETag"]


def test_range_read_by_compliance_key_works_too(server: ServerThread, big: Stored) -> None:
    with server.client() as http:
        response = http.get(
            big.content, headers={**auth(big.keys.compliance), "Range": "bytes=5-9"}
        )
    assert response.status_code == 206
    assert response.content == big.data[5:10]


# --- listing ------------------------------------------------------------------------------


def test_list_is_newest_first_and_filters_by_category(server: ServerThread, tenant: Tenant) -> None:
    ref = _ref()
    order = ["recording", "transcript", "recording", "transcript", "recording"]
    with server.client() as http:
        keys = data_keys(http, tenant)
        made = []
        for index, category in enumerate(order):
            made.append(uploaded(http, keys.ingest, ref, f"{index}".encode(), category=category))
            time.sleep(0.01)
        everything = http.get(subject_url(ref, "artefacts"), headers=auth(keys.read))
        transcripts = http.get(
            subject_url(ref, "artefacts"),
            params={"category": "transcript"},
            headers=auth(keys.read),
        )
        billing = http.get(
            subject_url(ref, "artefacts"), params={"category": "billing"}, headers=auth(keys.read)
        )
    assert everything.status_code == 200, everything.text
    body = everything.json()
    assert body["next_cursor"] is None
    assert [item["id"] for item in body["items"]] == [m["id"] for m in reversed(made)]
    assert body["items"][0] == made[-1]
    assert [item["id"] for item in transcripts.json()["items"]] == [made[3]["id"], made[1]["id"]]
    assert billing.json()["items"] == []


def test_list_pages_with_limit_and_cursor(server: ServerThread, tenant: Tenant) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        made = [uploaded(http, keys.ingest, ref, bytes([i]))["id"] for i in range(5)]
        seen: list[str] = []
        cursor = None
        for _ in range(5):
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = http.get(subject_url(ref, "artefacts"), params=params, headers=auth(keys.read))
            assert page.status_code == 200, page.text
            assert len(page.json()["items"]) <= 2
            seen += [item["id"] for item in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
    assert seen == list(reversed(made))


@pytest.mark.parametrize("limit", ["0", "501", "-1", "ten"])
def test_list_with_a_bad_limit_is_422(server: ServerThread, tenant: Tenant, limit: str) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        uploaded(http, keys.ingest, ref, b"x")
        response = http.get(
            subject_url(ref, "artefacts"), params={"limit": limit}, headers=auth(keys.read)
        )
    assert response.status_code == 422, response.text
    problem(response)


# --- maximum size -------------------------------------------------------------------------

LIMIT = MIB


@pytest.fixture(scope="module")
def small_server(settings: Settings, database_url: str) -> Iterator[ServerThread]:
    limited = dataclasses.replace(settings, max_artefact_bytes=LIMIT)
    with running_server(limited, database_url) as running:
        yield running


def test_artefact_of_exactly_the_maximum_size_is_accepted(
    small_server: ServerThread, tenant: Tenant
) -> None:
    data = os.urandom(LIMIT)
    with small_server.client() as http:
        keys = data_keys(http, tenant)
        meta = uploaded(http, keys.ingest, _ref(), data)
    assert meta["size"] == LIMIT
    assert meta["sha256"] == sha256_hex(data)


def test_declared_length_above_the_maximum_is_413_before_the_body_is_sent(
    small_server: ServerThread, tenant: Tenant, settings: Settings
) -> None:
    ref = _ref()
    with small_server.client() as http:
        keys = data_keys(http, tenant)
    host, port = small_server.base_url.removeprefix("http://").split(":")
    request = (
        f"POST {subject_url(ref, 'artefacts')}?category=recording HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"Authorization: Bearer {keys.ingest['secret']}\r\n"
        f"Content-Type: application/octet-stream\r\n"
        f"Content-Length: {LIMIT + 1}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)  # and no body at all: the answer must not wait for it
        received = read_response_head(sock)
    status_line = received.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 413"), received[:500]
    assert b"application/problem+json" in received.lower()
    with small_server.client() as http:
        listed = http.get(subject_url(ref, "artefacts"), headers=auth(keys.read))
    assert listed.status_code == 404 or listed.json()["items"] == [], listed.text


def test_chunked_body_growing_past_the_maximum_is_413_and_nothing_is_stored(
    small_server: ServerThread, tenant: Tenant, settings: Settings
) -> None:
    root = blob_root(settings)
    before = object_files(root)
    data = os.urandom(LIMIT + 1)
    ref = _ref()
    with small_server.client() as http:
        keys = data_keys(http, tenant)
        response = upload(http, keys.ingest, ref, chunks_of(data, 64 * 1024))
        listed = http.get(subject_url(ref, "artefacts"), headers=auth(keys.read))
    assert response.status_code == 413, response.text
    problem(response)
    assert listed.status_code == 404 or listed.json()["items"] == [], listed.text
    assert wait_for(lambda: not (object_files(root) - before), timeout=10), sorted(
        str(p.relative_to(root)) for p in object_files(root) - before
    )


def test_chunked_body_of_exactly_the_maximum_is_accepted(
    small_server: ServerThread, tenant: Tenant
) -> None:
    data = os.urandom(LIMIT)
    with small_server.client() as http:
        keys = data_keys(http, tenant)
        meta = uploaded(http, keys.ingest, _ref(), chunks_of(data, 64 * 1024))
    assert meta["size"] == LIMIT


# --- deletion -----------------------------------------------------------------------------


def test_deleted_artefact_is_gone_and_its_blob_removed(
    server: ServerThread, tenant: Tenant, settings: Settings
) -> None:
    ref = _ref()
    data = os.urandom(MIB + 5)
    root = blob_root(settings)
    with server.client() as http:
        keys = data_keys(http, tenant)
        meta = uploaded(http, keys.ingest, ref, data)
        kept = uploaded(http, keys.ingest, ref, b"the other one")
        assert blob_files(root, meta["id"]), "the stored blob's path names the artefact id"
        deleted = http.delete(artefact_url(ref, meta["id"]), headers=auth(keys.ingest))
        after = [
            http.get(artefact_url(ref, meta["id"]), headers=auth(keys.read)),
            http.get(artefact_url(ref, meta["id"], "content"), headers=auth(keys.read)),
            http.get(artefact_url(ref, meta["id"], "content"), headers=auth(keys.compliance)),
            http.head(artefact_url(ref, meta["id"], "content"), headers=auth(keys.read)),
        ]
        again = http.delete(artefact_url(ref, meta["id"]), headers=auth(keys.ingest))
        listed = http.get(subject_url(ref, "artefacts"), headers=auth(keys.read))
        other = http.get(artefact_url(ref, kept["id"], "content"), headers=auth(keys.read))
    assert deleted.status_code == 204, deleted.text
    assert deleted.content == b""
    for response in after:
        assert _gone(response.status_code), (response.request.method, response.status_code)
        assert data[:32] not in response.content
    for response in after[:3]:
        problem(response)
    assert _gone(again.status_code), again.text
    assert [item["id"] for item in listed.json()["items"]] == [kept["id"]]
    assert other.content == b"the other one"
    assert wait_for(lambda: not blob_files(root, meta["id"]), timeout=10), blob_files(
        root, meta["id"]
    )
    assert blob_files(root, kept["id"])


def _data_key_state(database_url: str, tenant: Tenant, artefact_id: str) -> tuple[Any, ...]:
    """(wrapped_key is NULL, destroyed_at) of the artefact's data key, read as the database
    owner (no row-level security: what a stolen dump would hold)."""

    async def run() -> tuple[Any, ...]:
        conn = await asyncpg.connect(database_url)
        try:
            row = await conn.fetchrow(
                """SELECT k.wrapped_key IS NULL AS wiped, k.destroyed_at
                     FROM artefacts a JOIN data_keys k
                       ON k.tenant_id = a.tenant_id AND k.id = a.data_key_id
                    WHERE a.tenant_id = $1 AND a.id = $2""",
                tenant.id,
                uuid.UUID(artefact_id),
            )
        finally:
            await conn.close()
        assert row is not None, artefact_id
        return tuple(row)

    return asyncio.run(run())


def test_deleted_artefact_has_its_data_key_destroyed_in_the_database(
    server: ServerThread, tenant: Tenant, database_url: str
) -> None:
    """DELETE crypto-shreds: the data key row keeps no wrapped key, only destroyed_at;
    the other artefact's key is untouched."""
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        meta = uploaded(http, keys.ingest, ref, os.urandom(MIB + 5))
        kept = uploaded(http, keys.ingest, ref, b"the other one")
        assert _data_key_state(database_url, tenant, meta["id"]) == (False, None)
        before = datetime.now(UTC)
        deleted = http.delete(artefact_url(ref, meta["id"]), headers=auth(keys.ingest))
        after = datetime.now(UTC)
    assert deleted.status_code == 204, deleted.text
    wiped, destroyed_at = _data_key_state(database_url, tenant, meta["id"])
    assert wiped is True
    assert destroyed_at is not None
    assert before - timedelta(seconds=5) <= destroyed_at <= after + timedelta(seconds=5)
    assert _data_key_state(database_url, tenant, kept["id"]) == (False, None)


def test_read_key_cannot_delete(server: ServerThread, tenant: Tenant) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        meta = uploaded(http, keys.ingest, ref, b"keep me")
        refused = http.delete(artefact_url(ref, meta["id"]), headers=auth(keys.read))
        still = http.get(artefact_url(ref, meta["id"], "content"), headers=auth(keys.read))
    assert refused.status_code == 403
    problem(refused)
    assert still.content == b"keep me"


# --- scopes -------------------------------------------------------------------------------


def test_admin_only_key_is_403_on_every_artefact_route(
    server: ServerThread, tenant: Tenant
) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        meta = uploaded(http, keys.ingest, ref, b"secret recording")
        admin = auth(keys.admin)
        responses = [
            upload(http, keys.admin, ref, b"nope"),
            http.get(subject_url(ref, "artefacts"), headers=admin),
            http.get(artefact_url(ref, meta["id"]), headers=admin),
            http.get(artefact_url(ref, meta["id"], "content"), headers=admin),
            http.head(artefact_url(ref, meta["id"], "content"), headers=admin),
            http.delete(artefact_url(ref, meta["id"]), headers=admin),
        ]
        listed = http.get(subject_url(ref, "artefacts"), headers=auth(keys.read))
    for response in responses:
        assert response.status_code == 403, (response.request.method, response.request.url)
        assert b"secret recording" not in response.content
    for response in responses[:4] + responses[5:]:
        problem(response)
    assert [item["id"] for item in listed.json()["items"]] == [meta["id"]]


def test_read_key_cannot_upload(server: ServerThread, tenant: Tenant) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        refused = upload(http, keys.read, ref, b"nope")
        listed = http.get(subject_url(ref, "artefacts"), headers=auth(keys.read))
    assert refused.status_code == 403
    problem(refused)
    assert listed.status_code == 404 or listed.json()["items"] == []


def test_ingest_key_uploads_and_deletes_but_does_not_read(
    server: ServerThread, tenant: Tenant
) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        meta = uploaded(http, keys.ingest, ref, b"write-only")
        ingest = auth(keys.ingest)
        reads = [
            http.get(artefact_url(ref, meta["id"], "content"), headers=ingest),
            http.get(artefact_url(ref, meta["id"]), headers=ingest),
            http.get(subject_url(ref, "artefacts"), headers=ingest),
        ]
        deleted = http.delete(artefact_url(ref, meta["id"]), headers=ingest)
    for response in reads:
        assert response.status_code == 403, (response.request.url, response.status_code)
        assert b"write-only" not in response.content
        problem(response)
    assert deleted.status_code == 204


def test_missing_or_wrong_key_is_401(server: ServerThread, tenant: Tenant) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        meta = uploaded(http, keys.ingest, ref, b"x")
        unauth = {"X-Forwarded-For": "198.51.100.201"}
        responses = [
            http.post(subject_url(ref, "artefacts"), params={"category": "recording"},
                      content=b"x", headers=unauth),
            http.get(artefact_url(ref, meta["id"], "content"), headers=unauth),
            http.get(
                artefact_url(ref, meta["id"], "content"),
                headers={**unauth, "Authorization": "Bearer dv_aaaaaaaaaaaa_" + "A" * 43},
            ),
        ]  # fmt: skip
    for response in responses:
        assert response.status_code == 401
        problem(response)


# --- integrity of the stored ciphertext ---------------------------------------------------


def _assert_integrity_failure(result: Any, *plaintexts: bytes) -> None:
    """Either an error status, or a body cut short by a transport error; never a whole
    body, never someone else's bytes or altered bytes served as if they were good."""
    if result.body is None:
        assert result.error, result
        return
    assert result.status >= 400, (result.status, len(result.body))
    for plaintext in plaintexts:
        assert plaintext[:4096] not in result.body


def _flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset % len(raw)] ^= 0x01
    path.write_bytes(bytes(raw))


def _only_blob(root: Path, artefact_id: str) -> Path:
    files = [p for p in blob_files(root, artefact_id) if not p.name.endswith(".partial")]
    assert len(files) == 1, (artefact_id, files)
    return files[0]


@pytest.mark.parametrize(
    "where", ["header", "first-segment", "middle-segment", "last-byte"], ids=str
)
def test_flipped_byte_in_the_stored_blob_is_an_integrity_error(
    server: ServerThread, tenant: Tenant, settings: Settings, where: str
) -> None:
    data = os.urandom(2 * MIB + MIB // 2)
    ref = _ref()
    root = blob_root(settings)
    with server.client() as http:
        keys = data_keys(http, tenant)
        meta = uploaded(http, keys.ingest, ref, data)
        path = _only_blob(root, meta["id"])
        size = path.stat().st_size
        offset = {
            "header": 20,
            "first-segment": size // 6,
            "middle-segment": size // 2,
            "last-byte": size - 1,
        }[where]
        _flip(path, offset)
        url = artefact_url(ref, meta["id"], "content")
        whole = download(http, url, auth(keys.read))
        ranged = download(
            http, url, {**auth(keys.read), "Range": f"bytes={len(data) // 2}-{len(data) // 2 + 9}"}
        )
        healthy = http.get("/healthz")
    _assert_integrity_failure(whole)
    if whole.body is not None:
        assert not whole.body.startswith(data[:16])
    if where in ("header", "middle-segment"):
        # The range lies in the middle segment: a flip there or in the header stops it.
        _assert_integrity_failure(ranged)
    elif ranged.body is not None and ranged.status == 206:
        assert ranged.body == data[len(data) // 2 : len(data) // 2 + 10]
    assert healthy.status_code == 200


def test_truncated_blob_is_an_integrity_error(
    server: ServerThread, tenant: Tenant, settings: Settings
) -> None:
    data = os.urandom(2 * MIB + 100)
    ref = _ref()
    root = blob_root(settings)
    with server.client() as http:
        keys = data_keys(http, tenant)
        meta = uploaded(http, keys.ingest, ref, data)
        path = _only_blob(root, meta["id"])
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) - 200])  # the last segment cut off part way
        result = download(http, artefact_url(ref, meta["id"], "content"), auth(keys.read))
    _assert_integrity_failure(result)
    if result.body is not None:
        assert result.body != data


def test_swapped_blobs_fail_integrity_and_never_serve_the_other_plaintext(
    server: ServerThread, tenant: Tenant, settings: Settings
) -> None:
    ref = _ref()
    first_data, second_data = os.urandom(300_000), os.urandom(300_000)
    root = blob_root(settings)
    with server.client() as http:
        keys = data_keys(http, tenant)
        first = uploaded(http, keys.ingest, ref, first_data)
        second = uploaded(http, keys.ingest, ref, second_data)
        first_path, second_path = _only_blob(root, first["id"]), _only_blob(root, second["id"])
        first_raw, second_raw = first_path.read_bytes(), second_path.read_bytes()
        first_path.write_bytes(second_raw)
        second_path.write_bytes(first_raw)
        results = [
            download(http, artefact_url(ref, first["id"], "content"), auth(keys.read)),
            download(http, artefact_url(ref, second["id"], "content"), auth(keys.read)),
            download(
                http,
                artefact_url(ref, first["id"], "content"),
                {**auth(keys.read), "Range": "bytes=0-99"},
            ),
        ]
    for result in results:
        _assert_integrity_failure(result, first_data, second_data)
        if result.body is not None:
            assert first_data[:100] not in result.body
            assert second_data[:100] not in result.body


# --- access log ---------------------------------------------------------------------------


def test_artefact_requests_are_logged_with_route_template_subject_hash_and_artefact_id(
    server: ServerThread, tenant: Tenant
) -> None:
    ref = f"org/{_ref()}"
    with server.client() as http:
        keys = data_keys(http, tenant)
        meta = uploaded(http, keys.ingest, ref, b"logged bytes")
        content = http.get(artefact_url(ref, meta["id"], "content"), headers=auth(keys.read))
        rows: list[dict[str, Any]] = []

        def logged() -> bool:
            rows[:] = access_log(http, keys.compliance, api_key_id=keys.read["id"])
            return bool(rows)

        assert wait_for(logged, timeout=10)
        upload_rows = access_log(http, keys.compliance, api_key_id=keys.ingest["id"])
        by_subject = access_log(http, keys.compliance, subject_ref=ref)
    assert content.status_code == 200
    row = next(r for r in rows if r["request_id"] == content.headers["X-Request-Id"])
    assert row["route"] == "/v1/subjects/{ref}/artefacts/{artefact_id}/content", row
    assert row["status"] == 200
    assert row["subject_ref_hash"] == meta["subject_ref_hash"]
    assert row["artefact_id"] == meta["id"]
    upload_row = upload_rows[0]
    assert upload_row["route"] == "/v1/subjects/{ref}/artefacts", upload_row
    assert upload_row["status"] == 201
    assert upload_row["subject_ref_hash"] == meta["subject_ref_hash"]
    for logged_row in (row, upload_row):
        assert ref not in logged_row["route"]
        assert meta["id"] not in logged_row["route"]
    assert {r["request_id"] for r in by_subject} >= {row["request_id"]}


# --- each artefact's ciphertext bound to its artefact -------------------------------------


async def _swap_artefact_columns(
    database_url: str, tenant_id: uuid.UUID, ids: tuple[str, str], columns: tuple[str, ...]
) -> None:
    """As the table owner: swap `columns` between two artefact rows."""
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            listed = ", ".join(columns)
            rows = [
                await conn.fetchrow(
                    f"SELECT {listed} FROM artefacts WHERE tenant_id = $1 AND id = $2",
                    tenant_id,
                    uuid.UUID(artefact_id),
                )
                for artefact_id in ids
            ]
            assignments = ", ".join(f"{c} = ${i + 3}" for i, c in enumerate(columns))
            for artefact_id, other in zip(ids, reversed(rows), strict=True):
                assert other is not None
                await conn.execute(
                    f"UPDATE artefacts SET {assignments} WHERE tenant_id = $1 AND id = $2",
                    tenant_id,
                    uuid.UUID(artefact_id),
                    *other.values(),
                )
    finally:
        await conn.close()


def test_keys_and_blobs_swapped_between_two_artefacts_are_integrity_errors(
    server: ServerThread, tenant: Tenant, database_url: str
) -> None:
    """DESIGN.md "Key hierarchy": a ciphertext moved to another artefact fails to open.
    Swapping (data_key_id, blob_key) with the sealed metadata between two artefacts of one
    subject reads neither as the other: metadata and content name their artefact."""
    ref = _ref()
    first_data, second_data = os.urandom(300_000), os.urandom(300_000)
    with server.client() as http:
        keys = data_keys(http, tenant)
        first = uploaded(http, keys.ingest, ref, first_data, filename="first.bin")
        second = uploaded(http, keys.ingest, ref, second_data, filename="second.bin")
        ids = (first["id"], second["id"])
        asyncio.run(
            _swap_artefact_columns(
                database_url, tenant.id, ids, ("data_key_id", "blob_key", "metadata_sealed")
            )
        )
        responses = []
        for artefact_id in ids:
            content = artefact_url(ref, artefact_id, "content")
            responses += [
                http.get(artefact_url(ref, artefact_id), headers=auth(keys.read)),
                http.get(content, headers=auth(keys.read)),
                http.get(content, headers={**auth(keys.read), "Range": "bytes=0-99"}),
            ]
        listed = http.get(subject_url(ref, "artefacts"), headers=auth(keys.read))
    for response in [*responses, listed]:
        assert response.status_code == 500, (response.status_code, response.text[:200])
        assert problem(response)["type"].endswith("/integrity")
        for name in (b"first.bin", b"second.bin"):
            assert name not in response.content
        for data in (first_data, second_data):
            assert data[:100] not in response.content


def test_a_blob_and_key_moved_to_another_artefact_fail_even_when_its_metadata_opens(
    server: ServerThread, tenant: Tenant, settings: Settings, database_url: str
) -> None:
    """The stream's own binding, on its own: the first artefact's row is given the second's
    data key and blob, and metadata sealed under that key for the first artefact (forged
    here with the vault's own keys, which an attacker does not have), so the metadata opens
    and only the stream's object identity (C3) stands between the two. Whole and ranged
    reads fail before any of the other artefact's bytes are sent."""
    ref = _ref()
    first_data, second_data = os.urandom(300_000), os.urandom(300_000)
    with server.client() as http:
        keys = data_keys(http, tenant)
        first = uploaded(http, keys.ingest, ref, first_data, filename="first.bin")
        second = uploaded(http, keys.ingest, ref, second_data, filename="second.bin")
        asyncio.run(
            _move_blob_with_forged_metadata(
                settings, database_url, tenant.id, first, second, first_data
            )
        )
        content = artefact_url(ref, first["id"], "content")
        described = http.get(artefact_url(ref, first["id"]), headers=auth(keys.read))
        reads = [
            http.get(content, headers=auth(keys.read)),
            http.get(content, headers={**auth(keys.read), "Range": "bytes=0-99"}),
            http.get(content, headers={**auth(keys.read), "Range": "bytes=200000-200099"}),
        ]
        untouched = http.get(artefact_url(ref, second["id"], "content"), headers=auth(keys.read))
    assert described.status_code == 200, described.text
    assert described.json()["filename"] == "first.bin"
    for response in reads:
        assert response.status_code == 500, (response.status_code, response.text[:200])
        assert problem(response)["type"].endswith("/integrity")
        assert second_data[:100] not in response.content
        assert second_data[200_000:200_100] not in response.content
    assert untouched.status_code == 200 and untouched.content == second_data


async def _move_blob_with_forged_metadata(
    settings: Settings,
    database_url: str,
    tenant_id: uuid.UUID,
    victim: dict[str, Any],
    source: dict[str, Any],
    victim_data: bytes,
) -> None:
    victim_id, source_id = uuid.UUID(victim["id"]), uuid.UUID(source["id"])
    async with (
        operator_context(settings, database_url) as ctx,
        ctx.db.tenant_tx(tenant_id) as tx,
    ):
        moved = await tx.fetchrow(
            "SELECT data_key_id, blob_key FROM artefacts WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            source_id,
        )
        assert moved is not None
        key = await ctx.keyring.data_key(tx, tenant_id, moved["data_key_id"])
    metadata = {
        "filename": "first.bin",
        "sha256": sha256_hex(victim_data),
        "crc32": zlib.crc32(victim_data),
    }
    forged = seal_record(
        key.key,
        json.dumps(metadata).encode(),
        key.content_context(artefact_object(victim_id), "metadata"),
    )
    conn = await asyncpg.connect(database_url)  # the table owner
    try:
        await conn.execute(
            "UPDATE artefacts SET data_key_id = $3, blob_key = $4, metadata_sealed = $5"
            " WHERE tenant_id = $1 AND id = $2",
            tenant_id, victim_id, moved["data_key_id"], moved["blob_key"], forged,
        )  # fmt: skip
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("stream_version", "record_version"),
    [(STREAM_V1, RECORD_V1), (STREAM_V2, RECORD_V2)],
    ids=["c1-b1", "c2-b2"],
)
def test_an_artefact_written_by_an_earlier_release_still_reads(
    server: ServerThread,
    tenant: Tenant,
    settings: Settings,
    database_url: str,
    stream_version: int,
    record_version: MessageFormat,
) -> None:
    """An artefact an earlier release wrote still reads whole and by range through the
    vault's read path, which names the artefact and writes `C3`: stream `C1` and metadata
    `B1` (no object in their associated data), or stream `C2` (its commitment covers the
    data key and salt only) and metadata `B2`."""
    ref = _ref()
    data = os.urandom(2 * MIB + 1000)
    with server.client() as http:
        keys = data_keys(http, tenant)
        meta = uploaded(http, keys.ingest, ref, b"placeholder", filename="old.bin")
        rewrite = _rewrite_as(
            settings, database_url, tenant.id, meta["id"], data, stream_version, record_version
        )
        asyncio.run(rewrite)
        described = http.get(artefact_url(ref, meta["id"]), headers=auth(keys.read))
        whole = http.get(artefact_url(ref, meta["id"], "content"), headers=auth(keys.read))
        ranged = http.get(
            artefact_url(ref, meta["id"], "content"),
            headers={**auth(keys.read), "Range": f"bytes={MIB - 10}-{MIB + 9}"},
        )
    assert described.status_code == 200, described.text
    assert described.json()["filename"] == "old.bin"
    assert described.json()["sha256"] == sha256_hex(data)
    assert whole.status_code == 200 and whole.content == data
    assert ranged.status_code == 206 and ranged.content == data[MIB - 10 : MIB + 10]


async def _rewrite_as(
    settings: Settings,
    database_url: str,
    tenant_id: uuid.UUID,
    artefact_id: str,
    data: bytes,
    stream_version: int,
    record_version: MessageFormat,
) -> None:
    this = uuid.UUID(artefact_id)
    async with (
        operator_context(settings, database_url) as ctx,
        ctx.db.tenant_tx(tenant_id) as tx,
    ):
        row = await tx.fetchrow(
            "SELECT data_key_id, blob_key FROM artefacts WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            this,
        )
        assert row is not None
        key = await ctx.keyring.data_key(tx, tenant_id, row["data_key_id"])
        first = [c async for c in ctx.blobs.get_range(row["blob_key"], 0, 0)]
        assert first == [bytes([STREAM_V3])]  # what this release writes
        # What the earlier release wrote: the same contexts, its formats.
        stream = _encrypt_stream_with(
            key.key,
            key.content_context(artefact_object(this)),
            _one_chunk(data),
            DEFAULT_SEGMENT_SIZE,
            random_bytes,
            stream_version,
        )
        await ctx.blobs.put_stream(row["blob_key"], stream)
        first = [c async for c in ctx.blobs.get_range(row["blob_key"], 0, 0)]
        assert first == [bytes([stream_version])]
        metadata = {"filename": "old.bin", "sha256": sha256_hex(data), "crc32": zlib.crc32(data)}
        sealed = _seal_record_with(
            key.key,
            json.dumps(metadata).encode(),
            key.content_context(artefact_object(this), "metadata"),
            random_bytes,
            record_version,
        )
    conn = await asyncpg.connect(database_url)  # the table owner
    try:
        await conn.execute(
            "UPDATE artefacts SET size = $3, metadata_sealed = $4 WHERE tenant_id = $1 AND id = $2",
            tenant_id, this, len(data), sealed,
        )  # fmt: skip
    finally:
        await conn.close()


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data
