"""Red team 24: tests/api/test_redteam24_stream_reads.py on the S3 store (SeaweedFS),
whose reads take other paths (one trip for a header, a thread of the read's own for
longer ranges and whole objects). What a read costs before it fails is counted at the
store (S3BlobStore.get_range and get_range_mapped, wrapped).

Found (as on the filesystem): an empty C2 artefact whose header says 64 MiB segments,
with junk after its tag, is read whole (64 MiB) before the integrity failure.
Held: a C3 header spliced onto another artefact's segments of the same subject fails
after reading the header alone, whole or by range.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import pytest

from crypto._stream_layout import STREAM_V2
from crypto.records import RECORD_V2
from tests.api.helpers import MIB, DataKeys, artefact_url, auth, data_keys, download, uploaded
from tests.api.test_artefacts import _rewrite_as
from tests.api.test_redteam19_stored_blob_tamper import _split, _with_segment_size
from tests.seaweed import SeaweedS3
from tests.support import ServerThread, Tenant, make_tenant, new_database, running_server
from vault.blobs.s3 import READ_CHUNK_BYTES, S3BlobStore
from vault.config import Settings

BUCKET = f"dv-rt24-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def s3_vault(settings: Settings, pg_admin_url: str, seaweed_s3: SeaweedS3) -> Settings:
    # A bucket of its own (another S3 vault's shred ledger would stop this one starting).
    bucket = seaweed_s3.new_bucket(BUCKET)
    return seaweed_s3.vault_settings(settings, new_database(pg_admin_url), bucket)


@pytest.fixture(scope="module")
def s3_server(s3_vault: Settings) -> Iterator[ServerThread]:
    with running_server(s3_vault, s3_vault.database_url or "") as server:
        yield server


@pytest.fixture(scope="module")
def s3_tenant(s3_vault: Settings, s3_server: ServerThread) -> tuple[Tenant, DataKeys]:
    tenant = make_tenant(s3_vault, s3_vault.database_url or "")
    with s3_server.client() as http:
        return tenant, data_keys(http, tenant)


@pytest.fixture
def store_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The bytes each of the S3 store's reads returned, in order."""
    reads: list[int] = []

    def counted(name: str) -> Any:
        real = getattr(S3BlobStore, name)

        async def read(self: S3BlobStore, *args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
            reads.append(0)
            async for piece in real(self, *args, **kwargs):
                reads[-1] += len(piece)
                yield piece

        return read

    for name in ("get_range", "get_range_mapped"):
        monkeypatch.setattr(S3BlobStore, name, counted(name))
    yield reads


def _object(seaweed_s3: SeaweedS3, artefact_id: str) -> tuple[str, bytes]:
    client = seaweed_s3.client()
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix="tenants/")
    (name,) = [o["Key"] for o in listing.get("Contents", []) if artefact_id in o["Key"]]
    with client.get_object(Bucket=BUCKET, Key=name)["Body"] as body:
        return str(name), bytes(body.read())


def test_an_empty_c2_artefact_on_s3_with_a_rewritten_segment_size_fails_before_its_junk(
    s3_vault: Settings,
    s3_server: ServerThread,
    s3_tenant: tuple[Tenant, DataKeys],
    seaweed_s3: SeaweedS3,
    store_reads: list[int],
) -> None:
    """Red team 24 finding 4 on S3: an empty C2 artefact whose header's segment size was
    rewritten, 64 MiB appended, was read whole before it failed. Fixed: an empty
    artefact's read takes only its header and tag."""
    tenant, keys = s3_tenant
    ref = f"rt24-empty-{uuid.uuid4().hex[:8]}"
    with s3_server.client() as http:
        meta = uploaded(http, keys.ingest, ref, b"")
        rewrite = _rewrite_as(
            s3_vault, s3_vault.database_url or "", tenant.id, meta["id"], b"", STREAM_V2,
            RECORD_V2,
        )  # fmt: skip
        asyncio.run(rewrite)
        name, raw = _object(seaweed_s3, meta["id"])
        assert raw[0] == STREAM_V2
        tampered = _with_segment_size(raw, 64 * MIB) + os.urandom(64 * MIB)
        seaweed_s3.client().put_object(Bucket=BUCKET, Key=name, Body=tampered)
        store_reads.clear()
        result = download(http, artefact_url(ref, meta["id"], "content"), auth(keys.read))
        seaweed_s3.client().put_object(Bucket=BUCKET, Key=name, Body=raw)  # junk out
    assert result.status == 500 and result.body and b"integrity" in result.body, result.status
    assert sum(store_reads) <= READ_CHUNK_BYTES, store_reads


@pytest.mark.parametrize("read", [None, "bytes=0-99", f"bytes={MIB - 8}-{MIB + 7}"])
def test_held_a_c3_header_spliced_onto_another_artefacts_segments_on_s3_reads_no_segment(
    s3_server: ServerThread,
    s3_tenant: tuple[Tenant, DataKeys],
    seaweed_s3: SeaweedS3,
    store_reads: list[int],
    read: str | None,
) -> None:
    _, keys = s3_tenant
    ref = f"rt24-splice-{uuid.uuid4().hex[:8]}"
    size = 3 * MIB + 100  # a whole read takes the reading thread's path
    with s3_server.client() as http:
        a = uploaded(http, keys.ingest, ref, os.urandom(size))
        b = uploaded(http, keys.ingest, ref, os.urandom(size))
        a_header, _ = _split(_object(seaweed_s3, a["id"])[1])
        b_name, b_raw = _object(seaweed_s3, b["id"])
        _, b_units = _split(b_raw)
        spliced = a_header + b"".join(b_units)
        seaweed_s3.client().put_object(Bucket=BUCKET, Key=b_name, Body=spliced)
        store_reads.clear()
        headers = auth(keys.read) | ({"Range": read} if read else {})
        result = download(http, artefact_url(ref, b["id"], "content"), headers)
    assert result.status == 500 and result.body and b"integrity" in result.body, result
    assert store_reads == [len(a_header)], store_reads  # the header only: no segment
