"""A ranged download asks the blob store for the stream header and the ciphertext of the
segments the range touches, nothing more (DESIGN.md: "a range read decrypts only the
segments it needs"). The expected byte spans come from crypto/FORMAT.md's layout, worked
out here by hand rather than with the planner the service uses."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import Any, TypeVar, cast

import pytest

from crypto.errors import IntegrityError
from tests.support import Tenant
from vault.blobs.base import BlobStore
from vault.config import Settings
from vault.domain.ranges import ByteRange
from vault.domain.scopes import Scope
from vault.domain.subject_refs import normalize_ref
from vault.runtime import operator_context
from vault.services.artefacts import ArtefactService
from vault.services.subject_refs import SubjectRefHasher
from vault.services.subjects import SubjectAccess, SubjectService
from vault.services.transfers import TransferLease

T = TypeVar("T")

MIB = 1024 * 1024
S = MIB  # the default segment size (plaintext bytes per segment)
TAG = 16  # GCM tag after each segment's ciphertext
FIXED_HEADER = 77  # header = 77 + len(key_id) bytes
SIZE = 5 * MIB + 123  # six segments, the last one short


class RecordingBlobStore:
    """The real store, with every ranged read and the bytes it handed out recorded."""

    def __init__(self, inner: BlobStore) -> None:
        self._inner = inner
        self.reads: list[tuple[str, int, int | None]] = []
        self.bytes_served = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def get_range(
        self, key: str, start: int = 0, end: int | None = None, *, piece_bytes: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        self.reads.append((key, start, end))
        inner = self._inner.get_range(key, start, end, piece_bytes=piece_bytes)
        async with aclosing(inner) as chunks:
            async for chunk in chunks:
                self.bytes_served += len(chunk)
                yield chunk

    async def get_range_mapped(
        self, key: str, start: int, end: int | None, *, piece_bytes: int,
        each: Callable[[bytes], bytes],
    ) -> AsyncGenerator[bytes, None]:  # fmt: skip
        """A long read, which both stores do on a thread that opens each segment
        (ReadsOnAThread): recorded as get_range is, counting the ciphertext it read."""
        self.reads.append((key, start, end))

        def counted(piece: bytes) -> bytes:
            self.bytes_served += len(piece)
            return each(piece)

        inner = self._inner.get_range_mapped(  # type: ignore[attr-defined]
            key, start, end, piece_bytes=piece_bytes, each=counted
        )
        async with aclosing(inner) as pieces:
            async for piece in pieces:
                yield piece

    def with_cached_range(
        self, key: str, start: int, end: int, use: Callable[[memoryview], T]
    ) -> T | None:
        """The filesystem store's read from the page cache (a seek of one or two
        segments), recorded as get_range's are when it served the bytes."""

        def counted(view: memoryview) -> T:
            self.reads.append((key, start, end))
            self.bytes_served += len(view)
            return use(view)

        return cast(Any, self._inner).with_cached_range(key, start, end, counted)  # type: ignore[no-any-return]


async def _body(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), MIB):
        yield data[start : start + MIB]


def expected_reads(header_len: int, start: int, end: int) -> list[tuple[int, int]]:
    """FORMAT.md: segment i starts at header + i·(S+16); all but the last are S+16 long."""
    first, last = start // S, end // S
    assert last < -(-SIZE // S) - 1, "these cases stay clear of the short last segment"
    return [
        (0, header_len - 1),
        (header_len + first * (S + TAG), header_len + (last + 1) * (S + TAG) - 1),
    ]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (2 * MIB - 100, 3 * MIB + 50),  # segments 1 to 3
        (2 * MIB + 10, 2 * MIB + 20),  # inside segment 2
        (MIB, 2 * MIB - 1),  # exactly segment 1
    ],
)
def test_ranged_download_fetches_only_the_header_and_needed_segments(
    settings: Settings, database_url: str, tenant: Tenant, start: int, end: int
) -> None:
    data = os.urandom(SIZE)
    access = SubjectAccess(may_read_restricted=False)

    async def run() -> tuple[RecordingBlobStore, bytes, bytes]:
        async with operator_context(settings, database_url) as ctx:
            store = RecordingBlobStore(ctx.blobs)
            subjects = SubjectService(ctx.keyring, SubjectRefHasher(ctx.db, ctx.root))
            service = ArtefactService(ctx.db, cast(BlobStore, store), ctx.keyring, subjects, SIZE)
            ref = normalize_ref("range-reader")
            api_key = await ctx.api_keys.create(
                tenant.id, name="range reader", scopes=frozenset({Scope.READ, Scope.INGEST})
            )
            artefact = await service.upload(
                tenant.id, ref, category="recording", content_type="video/mp4", filename=None,
                body=_body(data), declared_length=len(data),
                lease=TransferLease(ctx.db, tenant.id, api_key.id),
            )  # fmt: skip
            store.reads.clear()
            located = await service.locate(tenant.id, None, ref, artefact.id, access)
            content = await service.open_content(
                located, ByteRange(start, end), TransferLease(ctx.db, tenant.id, api_key.id)
            )
            received = b"".join([piece async for piece in content.body])
            key = store.reads[0][0]
            stored = await ctx.blobs.get(key)  # straight from the store, not recorded
            return store, received, stored

    store, received, stored = asyncio.run(run())
    assert received == data[start : end + 1]
    header_len = FIXED_HEADER + stored[1]  # byte 1 is the key id's length
    segments = -(-SIZE // S)
    assert len(stored) == header_len + SIZE + TAG * segments  # the layout is the one assumed
    wanted = expected_reads(header_len, start, end)
    assert [(begin, finish) for _, begin, finish in store.reads] == wanted
    assert {key for key, _, _ in store.reads} == {store.reads[0][0]}
    assert store.bytes_served == sum(finish - begin + 1 for begin, finish in wanted)


def test_seeking_again_reads_only_segments_and_a_wrong_cached_header_fails_closed(
    settings: Settings, database_url: str, tenant: Tenant
) -> None:
    """The header of a stream read recently is kept (vault/services/stream_headers.py): a
    player seeking again costs only the segments. A cached header that does not belong to
    the blob (here: another artefact's) opens nothing: an integrity error, then the header
    is read from the blob again."""
    data, other = os.urandom(SIZE), os.urandom(SIZE)
    access = SubjectAccess(may_read_restricted=False)

    async def run() -> tuple[list[list[tuple[int, int | None]]], list[bytes], bool]:
        async with operator_context(settings, database_url) as ctx:
            store = RecordingBlobStore(ctx.blobs)
            subjects = SubjectService(ctx.keyring, SubjectRefHasher(ctx.db, ctx.root))
            service = ArtefactService(
                ctx.db, cast(BlobStore, store), ctx.keyring, subjects, 10 * SIZE
            )
            ref = normalize_ref("seeker")
            api_key = await ctx.api_keys.create(
                tenant.id, name="seeker", scopes=frozenset({Scope.READ, Scope.INGEST})
            )

            async def stored(body: bytes) -> Any:
                return await service.upload(
                    tenant.id, ref, category="recording", content_type="video/mp4",
                    filename=None, body=_body(body), declared_length=len(body),
                    lease=TransferLease(ctx.db, tenant.id, api_key.id),
                )  # fmt: skip

            first, second = await stored(data), await stored(other)

            async def seek(artefact_id: Any, start: int) -> bytes:
                store.reads.clear()
                located = await service.locate(tenant.id, None, ref, artefact_id, access)
                content = await service.open_content(
                    located, ByteRange(start, start + 999),
                    TransferLease(ctx.db, tenant.id, api_key.id),
                )  # fmt: skip
                return b"".join([piece async for piece in content.body])

            reads, got = [], []
            for start in (3 * MIB, MIB + 7):
                got.append(await seek(first.id, start))
                reads.append([(b, e) for _, b, e in store.reads])
            # Another stream's header where this one's is cached.
            cache = service._headers
            located = await service.locate(tenant.id, None, ref, second.id, access)
            cache.put(located.blob_key, cache.get(store_key(cache)) or b"")
            failed = False
            try:
                await seek(second.id, 0)
            except IntegrityError:
                failed = True
            got.append(await seek(second.id, 0))
            return reads, got, failed

    reads, got, failed = asyncio.run(run())
    assert got[0] == data[3 * MIB : 3 * MIB + 1000] and got[1] == data[MIB + 7 : MIB + 1007]
    assert reads[0][0][0] == 0 and len(reads[0]) == 2  # the header, then the segment
    assert len(reads[1]) == 1 and reads[1][0][0] > 0  # the segment alone
    assert failed, "a header of another stream must not open this one"
    assert got[2] == other[:1000]  # read again from the blob, it opens


def store_key(cache: Any) -> str:
    """The one blob key cached so far (the first artefact's)."""
    keys = list(cache._headers)
    assert len(keys) == 1
    return str(keys[0])
