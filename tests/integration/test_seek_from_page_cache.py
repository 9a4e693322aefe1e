"""A seek of one or two segments whose bytes are in the page cache is opened straight
from the filesystem store's read buffer (blobs.base.ReadsCachedInline, issue 19 sixth
round). The range's edges come out exact, every segment a byte is taken from is
authenticated whole, and a tampered or cut segment fails the read before any byte of
it (or of a segment read with it) is handed on."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from crypto.errors import IntegrityError
from tests.support import Tenant
from vault.blobs.base import BlobStore
from vault.blobs.filesystem import FilesystemBlobStore
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
S = MIB  # plaintext bytes per segment
TAG = 16
FIXED_HEADER = 77  # header = 77 + len(key_id) bytes (crypto/FORMAT.md)
SIZE = 2 * MIB + 1000  # three segments, the last 1,000 bytes


class InlineCounting:
    """The real filesystem store; counts the reads it served from the page cache, and
    those it was asked for (served or not)."""

    def __init__(self, inner: FilesystemBlobStore) -> None:
        self._inner = inner
        self.inline: list[tuple[str, int, int]] = []
        self.asked = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def with_cached_range(
        self, key: str, start: int, end: int, use: Callable[[memoryview], T]
    ) -> T | None:
        self.asked += 1
        result = self._inner.with_cached_range(key, start, end, use)
        if result is not None:
            self.inline.append((key, start, end))
        return result


async def _body(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), MIB):
        yield data[start : start + MIB]


Reader = Callable[[int, int], Any]


def _with_artefact(
    settings: Settings, database_url: str, tenant: Tenant, data: bytes,
    then: Callable[[Reader, InlineCounting, Path], Any],
) -> Any:  # fmt: skip
    """Store `data` as an artefact, then run `then(read, store, blob_path)`: `read(a, b)`
    returns (bytes released, error or None) for the range a..b, read as a seek."""
    access = SubjectAccess(may_read_restricted=False)

    async def run() -> Any:
        async with operator_context(settings, database_url) as ctx:
            assert isinstance(ctx.blobs, FilesystemBlobStore)
            store = InlineCounting(ctx.blobs)
            subjects = SubjectService(ctx.keyring, SubjectRefHasher(ctx.db, ctx.root))
            service = ArtefactService(ctx.db, cast(BlobStore, store), ctx.keyring, subjects, SIZE)
            ref = normalize_ref("page-cache-seeker")
            api_key = await ctx.api_keys.create(
                tenant.id, name="seeker", scopes=frozenset({Scope.READ, Scope.INGEST})
            )
            artefact = await service.upload(
                tenant.id, ref, category="recording", content_type="video/mp4", filename=None,
                body=_body(data), declared_length=len(data),
                lease=TransferLease(ctx.db, tenant.id, api_key.id),
            )  # fmt: skip
            located = await service.locate(tenant.id, None, ref, artefact.id, access)
            path = ctx.blobs.root / located.blob_key

            async def read(first: int, last: int) -> tuple[bytes, Exception | None]:
                released: list[bytes] = []
                try:
                    located = await service.locate(tenant.id, None, ref, artefact.id, access)
                    content = await service.open_content(
                        located, ByteRange(first, last),
                        TransferLease(ctx.db, tenant.id, api_key.id),
                    )  # fmt: skip
                    async for piece in content.body:
                        released.append(piece)
                except IntegrityError as exc:
                    return b"".join(released), exc
                return b"".join(released), None

            return await then(read, store, path)

    return asyncio.run(run())


def _segment_start(path: Path, index: int) -> int:
    header_len = FIXED_HEADER + path.read_bytes()[1]  # byte 1: the key id's length
    return header_len + index * (S + TAG)


@pytest.mark.parametrize(
    ("first", "last"),
    [
        (0, 0),  # the first byte
        (SIZE - 1, SIZE - 1),  # the last byte
        (S - 10, S + 9),  # across the boundary of segments 0 and 1
        (2 * S + 100, SIZE - 1),  # inside the last, partial segment, to its end
        (2 * S, SIZE - 1),  # exactly the last segment
        (S, 2 * S - 1),  # exactly a middle segment
        (S + 5, S + 5 + 65535),  # a player's 64 KiB
    ],
)
def test_a_seek_from_the_page_cache_returns_exactly_its_range(
    settings: Settings, database_url: str, tenant: Tenant, first: int, last: int
) -> None:
    data = os.urandom(SIZE)

    async def then(read: Reader, store: InlineCounting, path: Path) -> Any:
        got, error = await read(first, last)
        return got, error, list(store.inline)

    got, error, inline = _with_artefact(settings, database_url, tenant, data, then)
    assert error is None
    assert got == data[first : last + 1]
    if not inline:
        pytest.skip("this filesystem cannot read without waiting (no RWF_NOWAIT)")
    assert len(inline) == 1  # the planned segments, in one read of the page cache


@pytest.mark.parametrize(
    ("first", "last", "flipped_segment"),
    [
        (S + 100, S + 200, 1),  # the one segment read
        (S - 10, S + 9, 1),  # the second of two segments: nothing of the first either
        (S - 10, S + 9, 0),  # the first of two
        (2 * S + 1, SIZE - 1, 2),  # the last, partial segment
    ],
    ids=["one-segment", "second-of-two", "first-of-two", "last-partial"],
)
def test_a_flipped_byte_in_a_segment_read_fails_the_seek_and_releases_nothing(
    settings: Settings,
    database_url: str,
    tenant: Tenant,
    first: int,
    last: int,
    flipped_segment: int,
) -> None:
    data = os.urandom(SIZE)

    async def then(read: Reader, store: InlineCounting, path: Path) -> Any:
        at = _segment_start(path, flipped_segment) + 321  # inside the ciphertext
        with path.open("r+b") as blob:
            blob.seek(at)
            byte = blob.read(1)
            blob.seek(at)
            blob.write(bytes([byte[0] ^ 0x01]))
        return *(await read(first, last)), store.asked

    released, error, asked = _with_artefact(settings, database_url, tenant, data, then)
    assert isinstance(error, IntegrityError)
    assert released == b""
    assert asked == 1  # the seek's one or two segments, opened from the read buffer


def test_a_blob_cut_short_fails_the_seek_of_its_last_segment(
    settings: Settings, database_url: str, tenant: Tenant
) -> None:
    """The page cache holds fewer bytes than the plan needs: not read inline, and the
    ordinary read finds the segment short."""
    data = os.urandom(SIZE)

    async def then(read: Reader, store: InlineCounting, path: Path) -> Any:
        os.truncate(path, path.stat().st_size - 7)
        got = await read(2 * S, SIZE - 1)
        return got, list(store.inline)

    (released, error), inline = _with_artefact(settings, database_url, tenant, data, then)
    assert isinstance(error, IntegrityError)
    assert released == b""
    assert inline == []
