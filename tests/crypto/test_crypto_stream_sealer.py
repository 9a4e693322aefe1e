"""The segment-at-a-time stream API (issue 19): StreamSealer writes exactly what
encrypt_stream writes and refuses any segment sequence that would not open;
StreamOpener opens segments only as the ones they are, and decrypt_range opening them
elsewhere (`open_in`) yields the same plaintext in order and fails the same way."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import pytest

from crypto._stream_layout import STREAM_V3
from crypto.context import OBJECT_ARTEFACT, PURPOSE_ARTEFACT, KeyContext, ObjectIdentity
from crypto.errors import IntegrityError
from crypto.secrets import SecretBytes, generate_key
from crypto.stream import (
    StreamOpener,
    StreamSealer,
    decrypt_range,
    decrypt_stream,
    parse_header,
    plan_range,
)

SEG = 64
CONTEXT = KeyContext(
    PURPOSE_ARTEFACT, "tenant-a", "subject-1", "recordings", 1, "artefact-7", 1,
    ObjectIdentity(OBJECT_ARTEFACT, "0b5e7f4c-8a8e-4a43-9d1a-6f1d2b3c4d5e"),
)  # fmt: skip


async def agen(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def sealed(data: bytes) -> tuple[bytes, list[bytes]]:
    key = generate_key()
    sealer = StreamSealer(key, CONTEXT, SEG)
    pieces = [data[i : i + SEG] for i in range(0, len(data), SEG)] or [b""]
    segments = [sealer.seal(p, last=i == len(pieces) - 1) for i, p in enumerate(pieces)]
    return key.reveal(), [sealer.header, *segments]


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, 3 * SEG + 5])
def test_sealed_segments_open_as_the_stream_they_make(size: int) -> None:
    data = os.urandom(size)
    key = generate_key()
    sealer = StreamSealer(key, CONTEXT, SEG)
    pieces = [data[i : i + SEG] for i in range(0, len(data), SEG)] or [b""]
    stream = [sealer.header] + [
        sealer.seal(p, last=i == len(pieces) - 1) for i, p in enumerate(pieces)
    ]

    async def read() -> bytes:
        return b"".join([p async for p in decrypt_stream(key, CONTEXT, agen(stream))])

    assert asyncio.run(read()) == data


def test_sealer_refuses_what_would_not_open() -> None:
    sealer = StreamSealer(generate_key(), CONTEXT, SEG)
    with pytest.raises(ValueError, match="exactly segment_size"):
        sealer.seal(b"x" * (SEG - 1), last=False)  # short, not last
    with pytest.raises(ValueError, match="exactly segment_size"):
        sealer.seal(b"x" * (SEG + 1), last=True)  # too long, even last
    sealer.seal(b"x" * SEG, last=False)
    with pytest.raises(ValueError, match="only the empty object"):
        sealer.seal(b"", last=True)  # an empty last segment after data
    sealer.seal(b"x", last=True)
    with pytest.raises(ValueError, match="sealed already"):
        sealer.seal(b"x", last=True)


def twin_sealers(key: SecretBytes) -> tuple[StreamSealer, StreamSealer]:
    """Two sealers of the same stream (the same salt and nonce prefix)."""

    def rng(n: int) -> bytes:
        return bytes(range(n))

    return (
        StreamSealer._with(key, CONTEXT, SEG, rng, STREAM_V3),
        StreamSealer._with(key, CONTEXT, SEG, rng, STREAM_V3),
    )


@pytest.mark.parametrize(
    "cuts",
    [[], [1], [SEG // 2], [SEG - 1], [0, 5, 5, 40], [3, 10, 20, 33, 63]],
)
def test_a_segment_sealed_from_parts_is_the_segment_sealed_whole(cuts: list[int]) -> None:
    # An upload's segments arrive as views of the body's chunks (issue 19, sixth round):
    # sealed without joining them, they are byte for byte what sealing them whole gives.
    key = generate_key()
    whole, parted = twin_sealers(key)
    data = os.urandom(3 * SEG + 7)
    segments = [data[i : i + SEG] for i in range(0, len(data), SEG)]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        bounds = [0, *(c for c in cuts if c <= len(segment)), len(segment)]
        view = memoryview(segment)
        parts = [view[a:b] for a, b in itertools.pairwise(bounds)]
        assert bytes(parted.seal_parts(parts, last=last)) == whole.seal(segment, last=last)


def test_sealing_from_parts_refuses_what_sealing_whole_refuses() -> None:
    sealer = StreamSealer(generate_key(), CONTEXT, SEG)
    with pytest.raises(ValueError, match="exactly segment_size"):
        sealer.seal_parts([b"x" * 10, b"y" * (SEG - 11)], last=False)  # one byte short
    with pytest.raises(ValueError, match="exactly segment_size"):
        sealer.seal_parts([b"x" * SEG, b"y"], last=True)  # one byte over
    sealer.seal_parts([b"x" * 10, b"y" * (SEG - 10)], last=False)
    with pytest.raises(ValueError, match="only the empty object"):
        sealer.seal_parts([b"", b""], last=True)
    sealer.seal_parts([b"x", b"y"], last=True)
    with pytest.raises(ValueError, match="sealed already"):
        sealer.seal_parts([b"x"], last=True)


def test_each_sealer_has_its_own_salt_and_nonces() -> None:
    key = generate_key()
    one, two = StreamSealer(key, CONTEXT, SEG), StreamSealer(key, CONTEXT, SEG)
    assert parse_header(one.header).salt != parse_header(two.header).salt
    assert one.seal(b"x" * SEG, last=True) != two.seal(b"x" * SEG, last=True)


def test_opener_opens_a_segment_only_as_itself() -> None:
    key = generate_key()
    sealer = StreamSealer(key, CONTEXT, SEG)
    first, last = sealer.seal(b"a" * SEG, last=False), sealer.seal(b"b" * 5, last=True)
    opener = StreamOpener(key, CONTEXT, sealer.header)
    assert opener.open(first, 0, False) == b"a" * SEG
    assert opener.open(last, 1, True) == b"b" * 5
    for segment, index, flag in ((first, 1, False), (first, 0, True), (last, 1, False)):
        with pytest.raises(IntegrityError):
            opener.open(segment, index, flag)
    with pytest.raises(IntegrityError):
        StreamOpener(generate_key(), CONTEXT, sealer.header)  # another key: commitment


def _range_read(
    key: bytes, stream: list[bytes], size: int, start: int, end: int,
    open_in: Callable[[Callable[[], bytes]], Awaitable[bytes]] | None,
) -> bytes:  # fmt: skip
    header = stream[0]
    plan = plan_range(parse_header(header), size, start, end)
    body = b"".join(stream[1:])
    wanted = body[plan.ciphertext_start - len(header) : plan.ciphertext_end + 1 - len(header)]
    pieces = [wanted[i : i + SEG + 16] for i in range(0, len(wanted), SEG + 16)]

    async def read() -> bytes:
        plaintext = decrypt_range(SecretBytes(key), CONTEXT, header, agen(pieces), plan, open_in)
        return b"".join([p async for p in plaintext])

    return asyncio.run(read())


@pytest.mark.parametrize(("start", "end"), [(0, 5 * SEG + 6), (SEG - 3, 3 * SEG + 2), (70, 71)])
def test_segments_opened_on_another_thread_give_the_same_range(start: int, end: int) -> None:
    data = os.urandom(5 * SEG + 7)
    key, stream = sealed(data)
    worker = ThreadPoolExecutor(max_workers=1)

    def open_in(job: Callable[[], bytes]) -> Awaitable[bytes]:
        return asyncio.get_running_loop().run_in_executor(worker, job)

    try:
        here = _range_read(key, stream, len(data), start, end, None)
        there = _range_read(key, stream, len(data), start, end, open_in)
    finally:
        worker.shutdown()
    assert here == there == data[start : end + 1]


def test_a_cut_stream_fails_when_opened_on_another_thread_too() -> None:
    data = os.urandom(5 * SEG + 7)
    key, stream = sealed(data)
    cut = stream[:-1]  # the last segment gone
    worker = ThreadPoolExecutor(max_workers=1)

    def open_in(job: Callable[[], bytes]) -> Awaitable[bytes]:
        return asyncio.get_running_loop().run_in_executor(worker, job)

    try:
        with pytest.raises(IntegrityError):
            _range_read(key, cut, len(data), 0, len(data) - 1, open_in)
    finally:
        worker.shutdown()
