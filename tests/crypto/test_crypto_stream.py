"""Streaming AEAD: vectors, round trips of any size and chunking, range reads."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.context import OBJECT_ARTEFACT, PURPOSE_ARTEFACT, KeyContext, ObjectIdentity
from crypto.errors import IntegrityError
from crypto.secrets import SecretBytes, generate_key
from crypto.stream import (
    _encrypt_stream_with,
    ciphertext_size,
    decrypt_range,
    decrypt_stream,
    encrypt_stream,
    header_size,
    parse_header,
    plaintext_size,
    plan_range,
)
from tests.crypto.vector_files import context_of, load, spec_context_encoding

FAST = settings(max_examples=60, deadline=None, database=None)
CONTEXT = KeyContext(
    PURPOSE_ARTEFACT, "tenant-a", "subject-1", "recordings", 1, "artefact-7", 1,
    ObjectIdentity(OBJECT_ARTEFACT, "0b5e7f4c-8a8e-4a43-9d1a-6f1d2b3c4d5e"),
)  # fmt: skip
VECTORS = load("stream")
# Per version: HKDF label prefix, the DVKC encoding the segments authenticate, and whether
# the commitment's info carries the header before it and that encoding (C3).
STREAM_SPEC = {
    0xC1: (b"datavault/stream/v1", 1, False),
    0xC2: (b"datavault/stream/v2", 2, False),
    0xC3: (b"datavault/stream/v3", 2, True),
}


async def agen(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def collect(pieces: AsyncIterable[bytes]) -> list[bytes]:
    return [piece async for piece in pieces]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)] or [b""]


def encrypt(key: SecretBytes, data: bytes, seg: int, chunks: list[bytes] | None = None) -> bytes:
    pieces = asyncio.run(collect(encrypt_stream(key, CONTEXT, agen(chunks or [data]), seg)))
    return b"".join(pieces)


def decrypt(key: SecretBytes, ct: bytes, context: KeyContext = CONTEXT, step: int = 0) -> bytes:
    chunks = [ct[i : i + step] for i in range(0, len(ct), step)] if step else [ct]
    return b"".join(asyncio.run(collect(decrypt_stream(key, context, agen(chunks)))))


def read_range(key: SecretBytes, ct: bytes, n: int, start: int, end: int, step: int = 0) -> bytes:
    header = parse_header(ct)
    plan = plan_range(header, n, start, end)
    body = ct[plan.ciphertext_start : plan.ciphertext_end + 1]
    chunks = [body[i : i + step] for i in range(0, len(body), step)] if step else [body]
    pieces = decrypt_range(key, CONTEXT, ct[: header.size], agen(chunks), plan)
    return b"".join(asyncio.run(collect(pieces)))


def replay(*parts: bytes) -> Callable[[int], bytes]:
    queue = list(parts)
    return lambda n: queue.pop(0)


@pytest.mark.parametrize("vector", VECTORS)
def test_stream_matches_vector_byte_for_byte(vector: dict[str, Any]) -> None:
    context = context_of(vector["context"])
    key = SecretBytes(bytes.fromhex(vector["data_key"]))
    plaintext, expected = bytes.fromhex(vector["plaintext"]), bytes.fromhex(vector["ciphertext"])
    rng = replay(bytes.fromhex(vector["salt"]), bytes.fromhex(vector["nonce_prefix"]))
    seg, version = vector["segment_size"], expected[0]
    stream = _encrypt_stream_with(key, context, agen([plaintext]), seg, rng, version)
    assert b"".join(asyncio.run(collect(stream))) == expected
    pieces = decrypt_stream(key, context, agen([expected]))
    assert b"".join(asyncio.run(collect(pieces))) == plaintext


@pytest.mark.parametrize("vector", VECTORS)
def test_stream_vector_follows_the_spec(vector: dict[str, Any]) -> None:
    # An independent reader written from FORMAT.md with pyca/cryptography only.
    ct, ikm = bytes.fromhex(vector["ciphertext"]), bytes.fromhex(vector["data_key"])
    label, encoding, covers_header = STREAM_SPEC[ct[0]]
    key_id = vector["context"]["key_id"].encode()
    assert ct[1] == len(key_id) and ct[2 : 2 + len(key_id)] == key_id
    at = 2 + len(key_id)
    seg = int.from_bytes(ct[at : at + 4], "big")
    salt, prefix = ct[at + 4 : at + 36], ct[at + 36 : at + 43]
    commitment, header = ct[at + 43 : at + 75], ct[: at + 75]
    assert seg == vector["segment_size"]

    def hkdf(info: bytes) -> bytes:
        return HKDF(hashes.SHA256(), 32, salt, info).derive(ikm)

    context = spec_context_encoding(vector["context"], encoding)
    covered = header[: -len(commitment)] + context if covers_header else b""
    assert commitment == hkdf(label + b"/commitment" + covered)
    aead = AESGCM(hkdf(label + b"/segment-key"))
    aad = header + context
    body = ct[len(header) :]
    segments = [body[i : i + seg + 16] for i in range(0, len(body), seg + 16)]
    plaintext = b""
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        nonce = prefix + index.to_bytes(4, "big") + bytes([last])
        plaintext += aead.decrypt(nonce, segment, aad)
    assert plaintext.hex() == vector["plaintext"]


def test_stream_vectors_cover_every_version_and_new_writes_are_c3() -> None:
    assert {bytes.fromhex(v["ciphertext"])[0] for v in VECTORS} == {0xC1, 0xC2, 0xC3}
    assert encrypt(generate_key(), b"x", 16)[0] == 0xC3


@pytest.mark.parametrize(
    "vector",
    [v for v in VECTORS if v["ciphertext"].startswith("c2")],
    ids=lambda v: v["plaintext"][:8] or "empty",
)
def test_c2_stream_written_before_c3_still_opens(vector: dict[str, Any]) -> None:
    """Fixed ciphertext: a stream the previous release wrote (C2) opens, whole and by
    range, with the same context; only its own artefact, as before."""
    key, ct = SecretBytes(bytes.fromhex(vector["data_key"])), bytes.fromhex(vector["ciphertext"])
    plaintext, context = bytes.fromhex(vector["plaintext"]), context_of(vector["context"])
    assert b"".join(asyncio.run(collect(decrypt_stream(key, context, agen([ct]))))) == plaintext
    if plaintext:
        header = parse_header(ct)
        plan = plan_range(header, len(plaintext), 1, len(plaintext) - 1)
        body = ct[plan.ciphertext_start : plan.ciphertext_end + 1]
        pieces = decrypt_range(key, context, ct[: header.size], agen([body]), plan)
        assert b"".join(asyncio.run(collect(pieces))) == plaintext[1:]
    moved = dataclasses.replace(context, object_identity=ObjectIdentity(OBJECT_ARTEFACT, "a-1"))
    with pytest.raises(IntegrityError):
        b"".join(asyncio.run(collect(decrypt_stream(key, moved, agen([ct])))))


@pytest.mark.parametrize(
    "vector",
    [v for v in VECTORS if v["ciphertext"].startswith("c1")],
    ids=lambda v: v["plaintext"][:8] or "empty",
)
def test_c1_stream_written_before_objects_still_opens(vector: dict[str, Any]) -> None:
    """Fixed ciphertext: a stream the old code wrote (C1) opens, whole and by range, for a
    reader that names the artefact, as every reader now does. C1 binds no object, so it
    opens whatever artefact is named (the documented limit of streams written before C2)."""
    key, ct = SecretBytes(bytes.fromhex(vector["data_key"])), bytes.fromhex(vector["ciphertext"])
    plaintext = bytes.fromhex(vector["plaintext"])
    context = dataclasses.replace(
        context_of(vector["context"]), object_identity=ObjectIdentity(OBJECT_ARTEFACT, "a-1")
    )
    assert b"".join(asyncio.run(collect(decrypt_stream(key, context, agen([ct]))))) == plaintext
    if plaintext:
        header = parse_header(ct)
        plan = plan_range(header, len(plaintext), 1, len(plaintext) - 1)
        body = ct[plan.ciphertext_start : plan.ciphertext_end + 1]
        pieces = decrypt_range(key, context, ct[: header.size], agen([body]), plan)
        assert b"".join(asyncio.run(collect(pieces))) == plaintext[1:]


@FAST
@given(
    data=st.binary(max_size=400),
    seg=st.integers(16, 64),
    cuts=st.lists(st.integers(0, 400), max_size=8),
    step=st.integers(1, 150),
)
def test_round_trip_any_size_and_chunking(
    data: bytes, seg: int, cuts: list[int], step: int
) -> None:
    key = generate_key()
    chunks = split(data, cuts)
    chunks.insert(len(chunks) // 2, b"")  # empty chunks are allowed anywhere
    ct = encrypt(key, data, seg, chunks)
    assert len(ct) == ciphertext_size(len(data), CONTEXT, seg)
    assert plaintext_size(len(ct), parse_header(ct)) == len(data)
    assert decrypt(key, ct, step=step) == data


@pytest.mark.parametrize("segments", [1, 2, 3, 5])
def test_exact_multiple_ends_with_a_full_last_segment(segments: int) -> None:
    key, seg = generate_key(), 16
    data = bytes(range(seg)) * segments
    ct = encrypt(key, data, seg)
    assert len(ct) == header_size(CONTEXT) + segments * (seg + 16)  # no empty extra segment
    assert decrypt(key, ct) == data


def test_empty_object_is_header_and_one_empty_last_segment() -> None:
    key = generate_key()
    ct = encrypt(key, b"", 16, chunks=[b"", b""])
    assert len(ct) == header_size(CONTEXT) + 16
    assert decrypt(key, ct) == b""
    assert plaintext_size(len(ct), parse_header(ct)) == 0


@FAST
@given(n=st.integers(0, 10_000), seg=st.integers(16, 64))
def test_size_helpers_invert_each_other(n: int, seg: int) -> None:
    total = ciphertext_size(n, CONTEXT, seg)
    header = parse_header(
        asyncio.run(collect(encrypt_stream(generate_key(), CONTEXT, agen([]), seg)))[0]
    )
    assert plaintext_size(total, header) == n


@pytest.mark.parametrize("body", [0, 15, 32 + 16, 32 + 5, 2 * 32 + 16])
def test_impossible_ciphertext_size_is_integrity_error(body: int) -> None:
    header = parse_header(encrypt(generate_key(), b"", 16))
    with pytest.raises(IntegrityError):
        plaintext_size(header.size + body, header)


@FAST
@given(
    data=st.binary(min_size=1, max_size=300),
    seg=st.integers(16, 48),
    bounds=st.tuples(st.integers(0, 299), st.integers(0, 299)),
    step=st.integers(1, 100),
)
def test_any_range_reads_exactly_that_range(
    data: bytes, seg: int, bounds: tuple[int, int], step: int
) -> None:
    key = generate_key()
    start, end = sorted(b % len(data) for b in bounds)
    ct = encrypt(key, data, seg)
    plan = plan_range(parse_header(ct), len(data), start, end)
    assert plan.first_segment == start // seg and plan.last_segment == end // seg
    assert plan.ciphertext_end - plan.ciphertext_start < (end // seg - start // seg + 1) * (
        seg + 16
    )
    assert read_range(key, ct, len(data), start, end, step) == data[start : end + 1]


def test_range_read_of_large_object_fetches_only_needed_segments() -> None:
    key, seg = generate_key(), 16
    data = bytes(range(256)) * 4
    ct = encrypt(key, data, seg)
    plan = plan_range(parse_header(ct), len(data), 100, 130)
    assert (plan.first_segment, plan.last_segment) == (6, 8)
    assert plan.ciphertext_end - plan.ciphertext_start + 1 == 3 * (seg + 16)
    assert read_range(key, ct, len(data), 100, 130) == data[100:131]


@pytest.mark.parametrize(("start", "end"), [(-1, 3), (5, 4), (0, 40), (40, 40)])
def test_range_outside_the_object_is_value_error(start: int, end: int) -> None:
    header = parse_header(encrypt(generate_key(), b"x" * 40, 16))
    with pytest.raises(ValueError):
        plan_range(header, 40, start, end)


def test_mutable_chunks_reused_by_the_producer_are_copied() -> None:
    key, data = generate_key(), bytes(range(200))

    async def reused_buffer() -> AsyncIterator[bytes]:
        buffer = bytearray(16)
        for i in range(0, len(data), 16):
            buffer[:] = data[i : i + 16].ljust(16, b"\x00")
            # deliberately a mutable buffer that the next iteration overwrites
            yield cast(bytes, buffer) if i + 16 <= len(data) else data[i:]

    pieces = asyncio.run(collect(encrypt_stream(key, CONTEXT, reused_buffer(), 16)))
    assert decrypt(key, b"".join(pieces)) == data


def test_encryption_is_incremental_with_bounded_buffering() -> None:
    key, seg, consumed = generate_key(), 16, [0]

    async def endless() -> AsyncIterator[bytes]:
        while True:
            consumed[0] += 1
            yield b"x" * seg

    async def first_three() -> list[int]:
        seen = []
        async for _ in encrypt_stream(key, CONTEXT, endless(), seg):
            seen.append(consumed[0])
            if len(seen) == 3:
                break
        return seen

    # header before any input; each segment leaves once the next chunk shows it is not last
    assert asyncio.run(first_three()) == [0, 2, 3]


def test_invalid_segment_size_or_key_id_is_value_error() -> None:
    with pytest.raises(ValueError):
        encrypt(generate_key(), b"x", 15)
    with pytest.raises(ValueError):
        encrypt(generate_key(), b"x", 64 * 1024 * 1024 + 1)
    long_id = KeyContext(PURPOSE_ARTEFACT, key_id="k" * 256)
    with pytest.raises(ValueError):
        header_size(long_id)


def test_plan_for_another_header_is_value_error() -> None:
    key = generate_key()
    ct16, ct32 = encrypt(key, b"x" * 50, 16), encrypt(key, b"x" * 50, 32)
    plan = plan_range(parse_header(ct16), 50, 0, 10)
    pieces = decrypt_range(key, CONTEXT, ct32[:100], agen([ct16]), plan)
    with pytest.raises(ValueError):
        asyncio.run(collect(pieces))
