"""An upload's body cut into segments as it arrives (vault/services/upload_pipeline.py,
issue 19, sixth round: segments are views of the body's chunks, sealed without being
joined): whatever the chunking, the stored stream opens to the body, and the size,
SHA-256 and CRC-32 the API returns are the body's; a body past the limit is refused."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import zlib
from collections.abc import AsyncIterator

import pytest

from crypto.context import OBJECT_ARTEFACT, PURPOSE_ARTEFACT, KeyContext, ObjectIdentity
from crypto.secrets import generate_key
from crypto.stream import StreamSealer, decrypt_stream
from vault.errors import TooLarge
from vault.services.artefact_meter import UploadMeter
from vault.services.upload_pipeline import sealed_upload

SEG = 64
CONTEXT = KeyContext(
    PURPOSE_ARTEFACT, "tenant-a", "subject-1", "recordings", 1, "artefact-9", 1,
    ObjectIdentity(OBJECT_ARTEFACT, "6d0c1f7e-2b8a-4c3d-9e5f-0a1b2c3d4e5f"),
)  # fmt: skip


async def chunks_of(data: bytes, sizes: list[int]) -> AsyncIterator[bytes]:
    position = 0
    for index, size in enumerate(sizes):
        chunk = data[position : position + size]
        position += size
        # Some producers hand out mutable buffers (and may reuse them).
        yield bytearray(chunk) if index % 3 == 1 else chunk  # type: ignore[misc]
    assert position >= len(data)


def upload(data: bytes, sizes: list[int], limit: int) -> tuple[bytes, UploadMeter, int]:
    key = generate_key()
    meter = UploadMeter(limit)
    sealer = StreamSealer(key, CONTEXT, SEG)

    async def run() -> tuple[bytes, int]:
        stored = [p async for p in sealed_upload(chunks_of(data, sizes), meter, sealer)]
        opened = [p async for p in decrypt_stream(key, CONTEXT, _replay(stored))]
        return b"".join(opened), len(stored) - 1

    opened, segments = asyncio.run(run())
    return opened, meter, segments


async def _replay(pieces: list[bytes | bytearray]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield bytes(piece)


def chunkings(size: int) -> list[list[int]]:
    rng = random.Random(size)
    ways = [[size], [1] * size, [SEG] * (size // SEG) + [size % SEG]]
    for _ in range(4):
        sizes: list[int] = []
        while sum(sizes) < size:
            sizes.append(rng.choice([0, 1, 7, SEG - 1, SEG, SEG + 1, 3 * SEG + 5]))
        ways.append(sizes)
    return ways


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 2 * SEG, 5 * SEG + 17])
def test_any_chunking_stores_the_body_and_its_digests(size: int) -> None:
    data = os.urandom(size)
    for sizes in chunkings(size):
        opened, meter, segments = upload(data, sizes, limit=size)
        assert opened == data
        assert segments == max(1, -(-size // SEG))  # one per segment, the empty one too
        assert meter.size == size
        assert meter.sha256 == hashlib.sha256(data).hexdigest()
        assert meter.crc32 == zlib.crc32(data)


def test_a_body_past_the_limit_is_refused() -> None:
    data = os.urandom(4 * SEG)
    with pytest.raises(TooLarge):
        upload(data, [SEG, SEG, SEG + 1, SEG - 1], limit=3 * SEG)
    # At the limit exactly it is stored.
    opened, meter, _ = upload(data[: 3 * SEG], [SEG, SEG, SEG], limit=3 * SEG)
    assert opened == data[: 3 * SEG] and meter.size == 3 * SEG
