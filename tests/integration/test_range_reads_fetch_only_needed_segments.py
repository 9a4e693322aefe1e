"""A ranged download asks the blob store for the stream header and the ciphertext of the
segments the range touches, nothing more (DESIGN.md: "a range read decrypts only the
segments it needs"). The expected byte spans come from crypto/FORMAT.md's layout, worked
out here by hand rather than with the planner the service uses."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, cast

import pytest

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
        self, key: str, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        self.reads.append((key, start, end))
        async with aclosing(self._inner.get_range(key, start, end)) as chunks:
            async for chunk in chunks:
                self.bytes_served += len(chunk)
                yield chunk


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
            content = await service.open_content(
                tenant.id, ref, artefact.id, access, ByteRange(start, end),
                TransferLease(ctx.db, tenant.id, api_key.id),
            )  # fmt: skip
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
