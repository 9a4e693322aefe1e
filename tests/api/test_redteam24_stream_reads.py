"""Red team 24: stored blobs changed under the vault, against stream format C3 (its
commitment covers the whole header, crypto/FORMAT.md "Stream v3") and the C2 blobs an
earlier release wrote, which still read.

The attacker has the filesystem store and nothing else. What the read costs before it
fails is counted at the store (FilesystemBlobStore.get_range, wrapped).

Found: an empty artefact is read by decrypt_stream over the whole blob, without the
row's segment size (vault/services/artefacts.py `_decrypted`, `size == 0`). A C2 empty
artefact whose header says 64 MiB segments, with junk after its tag, is read and
decrypted whole (64 MiB) before the integrity failure: FORMAT.md says the vault does not
pay that for C1/C2 blobs ("plan_range(…, segment_size=…) refuses a header that disagrees
… before any segment is read"), which holds only for artefacts of one byte or more.

Held: a C3 empty artefact with the same header change fails at the commitment after the
store's first read (1 MiB, its read chunk); a C3 header spliced onto another artefact's
segments of the same subject fails before any segment is read.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import pytest

from crypto._stream_layout import STREAM_V2, STREAM_V3
from crypto.records import RECORD_V2
from tests.api.helpers import (
    MIB,
    DataKeys,
    Download,
    artefact_url,
    auth,
    blob_root,
    data_keys,
    download,
    uploaded,
)
from tests.api.test_artefacts import _rewrite_as
from tests.api.test_redteam19_stored_blob_tamper import _only_blob, _split, _with_segment_size
from tests.support import ServerThread, Tenant, make_tenant
from vault.blobs.filesystem import READ_CHUNK_BYTES, FilesystemBlobStore
from vault.config import Settings


@pytest.fixture(scope="module")
def own_tenant(settings: Settings, database_url: str) -> Tenant:
    return make_tenant(settings, database_url)


@pytest.fixture(scope="module")
def keys_of(server: ServerThread, own_tenant: Tenant) -> DataKeys:
    with server.client() as http:
        return data_keys(http, own_tenant)


@pytest.fixture
def store_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The bytes each of the filesystem store's range reads returned, in order."""
    reads: list[int] = []
    real = FilesystemBlobStore.get_range

    async def counted(self: FilesystemBlobStore, key: str, *args: Any, **kwargs: Any) -> (
        AsyncGenerator[bytes, None]
    ):  # fmt: skip
        reads.append(0)
        async for chunk in real(self, key, *args, **kwargs):
            reads[-1] += len(chunk)
            yield chunk

    monkeypatch.setattr(FilesystemBlobStore, "get_range", counted)
    yield reads


def _integrity_failure(result: Download) -> bool:
    return result.status == 500 and result.body is not None and b"integrity" in result.body


def _empty_artefact(
    http: Any, tenant: Tenant, keys: DataKeys, settings: Settings, database_url: str,
    version: int,
) -> tuple[str, str]:  # fmt: skip
    ref = f"rt24-empty-{uuid.uuid4().hex[:8]}"
    meta = uploaded(http, keys.ingest, ref, b"")
    if version == STREAM_V2:  # as the previous release wrote it
        rewrite = _rewrite_as(
            settings, database_url, tenant.id, meta["id"], b"", STREAM_V2, RECORD_V2
        )
        asyncio.run(rewrite)
    return ref, meta["id"]


def test_an_empty_c2_artefact_with_a_rewritten_segment_size_fails_before_its_junk_is_read(
    server: ServerThread,
    settings: Settings,
    database_url: str,
    own_tenant: Tenant,
    keys_of: DataKeys,
    store_reads: list[int],
) -> None:
    """Attack: an empty artefact written as C2 (header and one 16-byte tag); its header's
    segment size rewritten to 64 MiB (not covered by a C2 commitment) and 64 MiB of junk
    written after the tag.

    Observed: the read fails (500 integrity) after reading 67,108,993 bytes from the store
    and opening them as one segment (about 0.25 s here), on every GET.
    Expected: refused before the junk is read, as a non-empty artefact's header is
    (plan_range with segment_size). Fixed (red team 24 finding 4): an empty artefact's
    read takes only its header and tag, whose check covers the header."""
    with server.client() as http:
        ref, artefact_id = _empty_artefact(
            http, own_tenant, keys_of, settings, database_url, STREAM_V2
        )
        path = _only_blob(blob_root(settings), artefact_id)
        raw = path.read_bytes()
        assert raw[0] == STREAM_V2
        path.write_bytes(_with_segment_size(raw, 64 * MIB) + os.urandom(64 * MIB))
        store_reads.clear()
        result = download(http, artefact_url(ref, artefact_id, "content"), auth(keys_of.read))
        path.write_bytes(raw)  # the 64 MiB of junk off the disk
    assert _integrity_failure(result), result.status
    assert sum(store_reads) <= READ_CHUNK_BYTES, store_reads


@pytest.mark.parametrize("tamper", ["segment-size-64mib", "junk-after-the-tag"])
def test_held_an_empty_c3_artefact_changed_in_the_store_reads_only_its_header_and_tag(
    server: ServerThread,
    settings: Settings,
    database_url: str,
    own_tenant: Tenant,
    keys_of: DataKeys,
    store_reads: list[int],
    tamper: str,
) -> None:
    """An empty artefact's read takes only its header and its one (empty) segment's tag
    from the store, as any read takes only its planned segments: a rewritten segment size
    fails (the C3 commitment and the tag both cover it), and junk appended after the tag
    is not read at all; the answer is then the exact empty plaintext, as appended bytes
    after any artefact's last segment are never read."""
    with server.client() as http:
        ref, artefact_id = _empty_artefact(
            http, own_tenant, keys_of, settings, database_url, STREAM_V3
        )
        path = _only_blob(blob_root(settings), artefact_id)
        raw = path.read_bytes()
        assert raw[0] == STREAM_V3
        exact = len(raw)
        if tamper == "segment-size-64mib":
            raw = _with_segment_size(raw, 64 * MIB)
        path.write_bytes(raw + os.urandom(64 * MIB))
        store_reads.clear()
        result = download(http, artefact_url(ref, artefact_id, "content"), auth(keys_of.read))
        path.write_bytes(raw)  # the 64 MiB of junk off the disk
    if tamper == "segment-size-64mib":
        assert _integrity_failure(result), result.status
    else:
        assert (result.status, result.body) == (200, b""), result.status
    assert sum(store_reads) <= exact, store_reads


@pytest.mark.parametrize("read", [None, "bytes=0-99", f"bytes={MIB - 8}-{MIB + 7}"])
def test_held_a_c3_header_spliced_onto_another_artefacts_segments_reads_no_segment(
    server: ServerThread,
    settings: Settings,
    keys_of: DataKeys,
    store_reads: list[int],
    read: str | None,
) -> None:
    """Attack: two artefacts of one subject, the same size and segment size; artefact B's
    blob becomes A's header followed by B's own segments. A's commitment names A's
    artefact (and A's key id): refused from the header, before any of B's segments is
    read, whole or by range; B's own header is never trusted again after it."""
    ref = f"rt24-splice-{uuid.uuid4().hex[:8]}"
    size = 2 * MIB + 100
    with server.client() as http:
        a = uploaded(http, keys_of.ingest, ref, os.urandom(size))
        b_data = os.urandom(size)
        b = uploaded(http, keys_of.ingest, ref, b_data)
        root = blob_root(settings)
        a_header, _ = _split(_only_blob(root, a["id"]).read_bytes())
        b_path = _only_blob(root, b["id"])
        _, b_units = _split(b_path.read_bytes())
        b_path.write_bytes(a_header + b"".join(b_units))
        store_reads.clear()
        headers = auth(keys_of.read) | ({"Range": read} if read else {})
        result = download(http, artefact_url(ref, b["id"], "content"), headers)
    assert _integrity_failure(result), (result.status, result.error)
    header_size = len(a_header)
    assert store_reads == [header_size], store_reads  # the header only: no segment
