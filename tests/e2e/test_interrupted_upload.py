"""An upload cut off half way leaves no visible artefact and no blob, not even a `.partial`
file or an unfinished S3 multipart upload (DESIGN.md "Failure behaviour"; API.md
"Artefacts")."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.api.helpers import (
    MIB,
    auth,
    blob_files,
    blob_root,
    data_keys,
    object_files,
    subject_url,
    wait_for,
)
from tests.seaweed import SeaweedS3
from tests.support import (
    ServerThread,
    Tenant,
    make_tenant,
    new_database,
    read_response_head,
    running_server,
)
from vault.blobs.s3 import PART_SIZE_BYTES
from vault.config import Settings
from vault.runtime import operator_context
from vault.services.artefacts import ABANDONED_UPLOAD_AFTER
from workers.sweeper import sweep


def _address(server: ServerThread) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").split(":")
    return host, int(port)


def _head(server: ServerThread, secret: str, ref: str, framing: str) -> bytes:
    host, port = _address(server)
    return (
        f"POST {subject_url(ref, 'artefacts')}?category=recording HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"Authorization: Bearer {secret}\r\n"
        f"Content-Type: audio/wav\r\n"
        f"{framing}\r\n\r\n"
    ).encode()


def _send_whole(server: ServerThread, secret: str, ref: str, body: bytes, timeout: float) -> bytes:
    """The hand-written upload sent in full: the head of the answer."""
    with socket.create_connection(_address(server), timeout=timeout) as sock:
        sock.sendall(_head(server, secret, ref, f"Content-Length: {len(body)}"))
        sock.sendall(body)
        return read_response_head(sock)


def _nothing_left(server: ServerThread, read_key: dict[str, Any], ref: str) -> bool:
    with server.client() as http:
        listed = http.get(subject_url(ref, "artefacts"), headers=auth(read_key))
    if listed.status_code == 404:
        return True
    assert listed.status_code == 200, listed.text
    items: list[object] = listed.json()["items"]
    return items == []


def _partials(root: Path) -> list[Path]:
    return [p for p in blob_files(root) if p.name.endswith(".partial")]


def _new_objects(root: Path, before: set[Path]) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in object_files(root) - before)


def test_upload_cut_off_after_3_of_8_mib_leaves_nothing(
    server: ServerThread, tenant: Tenant, settings: Settings
) -> None:
    root = blob_root(settings)
    before = object_files(root)
    ref = f"caller-{uuid.uuid4().hex[:10]}"
    with server.client() as http:
        keys = data_keys(http, tenant)
    body = os.urandom(3 * MIB)
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(_head(server, keys.ingest["secret"], ref, f"Content-Length: {8 * MIB}"))
        sock.sendall(body)
        time.sleep(0.3)  # the vault is now writing the upload's first segments
    # closed with 5 MiB still owed
    assert wait_for(lambda: _nothing_left(server, keys.read, ref), timeout=10)
    assert wait_for(lambda: not _new_objects(root, before), timeout=10), _new_objects(root, before)
    assert wait_for(lambda: not _partials(root), timeout=10), _partials(root)


def test_chunked_upload_cut_off_before_its_last_chunk_leaves_nothing(
    server: ServerThread, tenant: Tenant, settings: Settings
) -> None:
    root = blob_root(settings)
    before = object_files(root)
    ref = f"caller-{uuid.uuid4().hex[:10]}"
    with server.client() as http:
        keys = data_keys(http, tenant)
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(_head(server, keys.ingest["secret"], ref, "Transfer-Encoding: chunked"))
        for _ in range(3):
            chunk = os.urandom(MIB)
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        time.sleep(0.3)
    # closed without the terminating zero-length chunk
    assert wait_for(lambda: _nothing_left(server, keys.read, ref), timeout=10)
    assert wait_for(lambda: not _new_objects(root, before), timeout=10), _new_objects(root, before)
    assert wait_for(lambda: not _partials(root), timeout=10), _partials(root)


def test_the_same_raw_upload_sent_whole_is_stored(
    server: ServerThread, tenant: Tenant, settings: Settings
) -> None:
    """The positive twin: the hand-written request is well formed."""
    ref = f"caller-{uuid.uuid4().hex[:10]}"
    with server.client() as http:
        keys = data_keys(http, tenant)
    body = os.urandom(3 * MIB)
    received = _send_whole(server, keys.ingest["secret"], ref, body, timeout=30)
    assert received.startswith(b"HTTP/1.1 201"), received[:300]
    with server.client() as http:
        listed = http.get(subject_url(ref, "artefacts"), headers=auth(keys.read))
    assert [item["size"] for item in listed.json()["items"]] == [len(body)]
    assert not _partials(blob_root(settings))


# --- the same on the S3 blob store (SeaweedFS) ---------------------------------------------


@pytest.fixture(scope="module")
def s3_vault(settings: Settings, pg_admin_url: str, seaweed_s3: SeaweedS3) -> Settings:
    """A vault on a bucket of its own (the shred ledger lives in the blob store, so a
    deployment's database and bucket belong together), with its own database."""
    bucket = f"dv-cut-{uuid.uuid4().hex[:12]}"
    client = seaweed_s3.client()
    try:
        client.create_bucket(Bucket=bucket)
    finally:
        client.close()
    return seaweed_s3.vault_settings(settings, new_database(pg_admin_url), bucket)


@pytest.fixture(scope="module")
def s3_server(s3_vault: Settings) -> Iterator[ServerThread]:
    with running_server(s3_vault, s3_vault.database_url or "") as server:
        yield server


def _s3_objects(seaweed_s3: SeaweedS3, bucket: str) -> list[str]:
    client = seaweed_s3.client()
    try:
        listing = client.list_objects_v2(Bucket=bucket, Prefix="tenants/")
    finally:
        client.close()
    return sorted(item["Key"] for item in listing.get("Contents", []))


def _s3_uploads(seaweed_s3: SeaweedS3, bucket: str) -> list[tuple[str, str]]:
    """Unfinished multipart uploads in the bucket: (key, upload id)."""
    client = seaweed_s3.client()
    try:
        listing = client.list_multipart_uploads(Bucket=bucket)
    finally:
        client.close()
    return sorted((u["Key"], u["UploadId"]) for u in listing.get("Uploads", []))


def _s3_parts(seaweed_s3: SeaweedS3, bucket: str) -> int:
    """Parts uploaded so far, over every unfinished multipart upload in the bucket."""
    client = seaweed_s3.client()
    try:
        return sum(
            len(client.list_parts(Bucket=bucket, Key=key, UploadId=upload).get("Parts", []))
            for key, upload in _s3_uploads(seaweed_s3, bucket)
        )
    finally:
        client.close()


def _sweep_s3(s3_vault: Settings) -> int:
    """One sweeper pass as it would run once the upload is old enough to be abandoned."""

    async def run() -> int:
        async with operator_context(s3_vault, s3_vault.database_url or "") as ctx:
            later = datetime.now(UTC) + ABANDONED_UPLOAD_AFTER + timedelta(hours=1)
            report = await sweep(ctx.db, ctx.blobs, ctx.keyring, now=later)
            return report.incomplete_aborted

    return asyncio.run(run())


def test_upload_to_s3_cut_off_after_the_first_multipart_part_leaves_nothing(
    s3_server: ServerThread, s3_vault: Settings, seaweed_s3: SeaweedS3
) -> None:
    bucket = s3_vault.s3_bucket or ""
    tenant = make_tenant(s3_vault, s3_vault.database_url or "")
    ref = f"caller-{uuid.uuid4().hex[:10]}"
    with s3_server.client() as http:
        keys = data_keys(http, tenant)
    before = set(_s3_objects(seaweed_s3, bucket))
    sent = PART_SIZE_BYTES + 4 * MIB  # one whole 8 MiB part and some of the next
    with socket.create_connection(_address(s3_server), timeout=30) as sock:
        head = _head(s3_server, keys.ingest["secret"], ref, f"Content-Length: {24 * MIB}")
        sock.sendall(head)
        for _ in range(sent // MIB):
            sock.sendall(os.urandom(MIB))
        # The first part has reached the store: the cut comes mid multipart upload.
        assert wait_for(lambda: _s3_parts(seaweed_s3, bucket) >= 1, timeout=30), _s3_uploads(
            seaweed_s3, bucket
        )
    # closed with 12 MiB still owed
    assert wait_for(lambda: _nothing_left(s3_server, keys.read, ref), timeout=10)
    assert wait_for(lambda: set(_s3_objects(seaweed_s3, bucket)) == before, timeout=10), (
        set(_s3_objects(seaweed_s3, bucket)) - before
    )
    # The upload is aborted at once; failing that, the sweeper aborts it.
    if not wait_for(lambda: not _s3_uploads(seaweed_s3, bucket), timeout=10):
        _sweep_s3(s3_vault)
    assert _s3_uploads(seaweed_s3, bucket) == []
    assert set(_s3_objects(seaweed_s3, bucket)) == before


def test_the_same_s3_upload_sent_whole_is_stored_as_one_object(
    s3_server: ServerThread, s3_vault: Settings, seaweed_s3: SeaweedS3
) -> None:
    """The positive twin: the same raw request, complete, is stored, and nothing unfinished
    is left in the bucket."""
    bucket = s3_vault.s3_bucket or ""
    tenant = make_tenant(s3_vault, s3_vault.database_url or "")
    ref = f"caller-{uuid.uuid4().hex[:10]}"
    with s3_server.client() as http:
        keys = data_keys(http, tenant)
    body = os.urandom(PART_SIZE_BYTES + 4 * MIB)
    received = _send_whole(s3_server, keys.ingest["secret"], ref, body, timeout=60)
    assert received.startswith(b"HTTP/1.1 201"), received[:300]
    with s3_server.client() as http:
        listed = http.get(subject_url(ref, "artefacts"), headers=auth(keys.read))
    items = listed.json()["items"]
    assert [item["size"] for item in items] == [len(body)]
    assert [key for key in _s3_objects(seaweed_s3, bucket) if items[0]["id"] in key]
    assert _s3_uploads(seaweed_s3, bucket) == []
