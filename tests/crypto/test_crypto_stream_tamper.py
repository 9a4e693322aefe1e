"""Streaming AEAD under attack: every alteration is an IntegrityError, never plaintext."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto._primitives import random_bytes
from crypto._stream_layout import STREAM_V2
from crypto.context import (
    OBJECT_ARTEFACT,
    OBJECT_RECORD,
    PURPOSE_ARTEFACT,
    PURPOSE_RECORD,
    KeyContext,
    ObjectIdentity,
)
from crypto.errors import IntegrityError
from crypto.secrets import SecretBytes, generate_key
from crypto.stream import (
    _encrypt_stream_with,
    decrypt_range,
    decrypt_stream,
    encrypt_stream,
    parse_header,
    plan_range,
)

FAST = settings(max_examples=60, deadline=None, database=None)
SEG = 16
ARTEFACT = ObjectIdentity(OBJECT_ARTEFACT, "0b5e7f4c-8a8e-4a43-9d1a-6f1d2b3c4d5e")
CONTEXT = KeyContext(
    PURPOSE_ARTEFACT, "tenant-a", "subject-1", "recordings", 1, "artefact-7", 1, ARTEFACT
)


async def agen(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def collect(pieces: AsyncIterable[bytes]) -> list[bytes]:
    return [piece async for piece in pieces]


def encrypt(key: SecretBytes, data: bytes, context: KeyContext = CONTEXT) -> bytes:
    return b"".join(asyncio.run(collect(encrypt_stream(key, context, agen([data]), SEG))))


def decrypt(key: SecretBytes, ct: bytes, context: KeyContext = CONTEXT) -> bytes:
    return b"".join(asyncio.run(collect(decrypt_stream(key, context, agen([ct])))))


def cut(ct: bytes) -> tuple[bytes, list[bytes]]:
    size = parse_header(ct).size
    body = ct[size:]
    return ct[:size], [body[i : i + SEG + 16] for i in range(0, len(body), SEG + 16)]


@FAST
@given(data=st.data(), n=st.integers(0, 100))
def test_any_flipped_bit_is_integrity_error(data: st.DataObject, n: int) -> None:
    key = generate_key()
    ct = bytearray(encrypt(key, bytes(n)))
    bit = data.draw(st.integers(0, len(ct) * 8 - 1))
    ct[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(IntegrityError):
        decrypt(key, bytes(ct))


@FAST
@given(n=st.integers(0, 100), keep=st.integers(0, 300))
def test_any_truncation_is_integrity_error(n: int, keep: int) -> None:
    key = generate_key()
    ct = encrypt(key, bytes(n))
    with pytest.raises(IntegrityError):
        decrypt(key, ct[: keep % len(ct)])


def test_dropping_the_last_segment_is_integrity_error() -> None:
    key = generate_key()
    header, segments = cut(encrypt(key, bytes(3 * SEG)))  # exact multiple: 3 full segments
    with pytest.raises(IntegrityError):
        decrypt(key, header + b"".join(segments[:-1]))


@pytest.mark.parametrize(
    "rearrange",
    [
        lambda s: [s[1], s[0], *s[2:]],  # reorder
        lambda s: [s[0], s[0], *s[1:]],  # duplicate
        lambda s: [s[0], *s[2:]],  # drop from the middle
        lambda s: [*s, s[-1]],  # append a copy of the last
        lambda s: [*s[:-1], s[-2], s[-1]],  # duplicate before the last
    ],
)
def test_rearranged_segments_are_integrity_error(rearrange: Any) -> None:
    key = generate_key()
    header, segments = cut(encrypt(key, bytes(range(70))))
    with pytest.raises(IntegrityError):
        decrypt(key, header + b"".join(rearrange(segments)))


def test_header_from_another_object_is_integrity_error() -> None:
    key = generate_key()
    header_a, segments_a = cut(encrypt(key, b"a" * 40))
    header_b, _ = cut(encrypt(key, b"b" * 40))
    with pytest.raises(IntegrityError):
        decrypt(key, header_b + b"".join(segments_a))
    assert decrypt(key, header_a + b"".join(segments_a)) == b"a" * 40


def test_segments_spliced_from_another_object_are_integrity_error() -> None:
    key = generate_key()
    header_a, segments_a = cut(encrypt(key, b"a" * 40))
    _, segments_b = cut(encrypt(key, b"b" * 40))
    with pytest.raises(IntegrityError):
        decrypt(key, header_a + segments_a[0] + segments_b[1] + segments_a[2])


@pytest.mark.parametrize(
    "change",
    [
        {"purpose": PURPOSE_RECORD},
        {"tenant_id": "tenant-b"},
        {"subject_id": "subject-2"},
        {"category": "billing"},
        {"generation": 2},
        {"key_id": "artefact-8"},
        {"version": 2},
        {
            "object_identity": ObjectIdentity(
                OBJECT_ARTEFACT, "7d1e0c55-0c1b-4d8e-b7a2-3e4f5a6b7c8d"
            )
        },
        {"object_identity": ObjectIdentity(OBJECT_RECORD, ARTEFACT.name)},
        {"object_identity": None},
    ],
)
def test_wrong_context_field_is_integrity_error(change: dict[str, Any]) -> None:
    key = generate_key()
    ct = encrypt(key, b"payload" * 5)
    with pytest.raises(IntegrityError):
        decrypt(key, ct, dataclasses.replace(CONTEXT, **change))


def test_c2_stream_opened_as_another_artefact_is_integrity_error_by_range_too() -> None:
    # The object is authenticated by every segment, so a range read fails as well.
    key = generate_key()
    ct = encrypt(key, bytes(range(70)))
    other = dataclasses.replace(
        CONTEXT, object_identity=ObjectIdentity(OBJECT_ARTEFACT, "another-artefact")
    )
    header = parse_header(ct)
    plan = plan_range(header, 70, 20, 40)
    body = ct[plan.ciphertext_start : plan.ciphertext_end + 1]
    assert b"".join(
        asyncio.run(collect(decrypt_range(key, CONTEXT, ct[: header.size], agen([body]), plan)))
    ) == bytes(range(20, 41))
    with pytest.raises(IntegrityError):
        asyncio.run(collect(decrypt_range(key, other, ct[: header.size], agen([body]), plan)))


def test_c2_stream_relabelled_c1_fails_at_the_commitment() -> None:
    # A downgrade to the version that binds no object: the labels carry the version.
    # (C3's downgrades: test_crypto_stream_header_commitment.py.)
    key = generate_key()
    sealed = _encrypt_stream_with(
        key, CONTEXT, agen([b"payload" * 5]), SEG, random_bytes, STREAM_V2
    )
    ct = b"".join(asyncio.run(collect(sealed)))
    assert decrypt(key, ct) == b"payload" * 5
    with pytest.raises(IntegrityError):
        decrypt(key, b"\xc1" + ct[1:])


def test_wrong_key_fails_at_the_commitment_before_any_segment() -> None:
    ct = encrypt(generate_key(), b"payload" * 5)

    async def first_piece() -> bytes:
        return await anext(decrypt_stream(generate_key(), CONTEXT, agen([ct])))

    with pytest.raises(IntegrityError):
        asyncio.run(first_piece())


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\xc1", b"\x00" * 200, b"\xc1\x00" + b"\x00" * 75, b"\xc4" + b"\x00" * 200],
)
def test_malformed_header_is_integrity_error(garbage: bytes) -> None:
    with pytest.raises(IntegrityError):
        parse_header(garbage)
    with pytest.raises(IntegrityError):
        decrypt(generate_key(), garbage)


def range_read(key: SecretBytes, ct: bytes, n: int, start: int, end: int, body: bytes) -> bytes:
    header = parse_header(ct)
    plan = plan_range(header, n, start, end)
    pieces = decrypt_range(key, CONTEXT, ct[: header.size], agen([body]), plan)
    return b"".join(asyncio.run(collect(pieces)))


def test_range_with_wrong_total_length_is_integrity_error() -> None:
    key, data = generate_key(), bytes(range(50))
    ct = encrypt(key, data)
    # Claiming the object is shorter makes the real non-last segment 3 carry the last flag.
    plan = plan_range(parse_header(ct), 48, 40, 47)
    body = ct[plan.ciphertext_start : plan.ciphertext_end + 1]
    with pytest.raises(IntegrityError):
        range_read(key, ct, 48, 40, 47, body)


def test_range_missing_the_truncated_tail_is_integrity_error() -> None:
    key, data = generate_key(), bytes(range(50))
    ct = encrypt(key, data)
    header, segments = cut(ct)
    truncated = header + b"".join(segments[:-1])  # the storage lost the final segment
    plan = plan_range(parse_header(ct), 50, 30, 49)
    body = truncated[plan.ciphertext_start : plan.ciphertext_end + 1]
    with pytest.raises(IntegrityError):
        range_read(key, ct, 50, 30, 49, body)


@pytest.mark.parametrize("alter", [lambda b: b + b"\x00", lambda b: b[:-1], lambda b: b""])
def test_range_with_extra_or_missing_bytes_is_integrity_error(alter: Any) -> None:
    key, data = generate_key(), bytes(range(50))
    ct = encrypt(key, data)
    plan = plan_range(parse_header(ct), 50, 10, 20)
    body = alter(ct[plan.ciphertext_start : plan.ciphertext_end + 1])
    with pytest.raises(IntegrityError):
        range_read(key, ct, 50, 10, 20, body)


def test_range_with_segments_from_the_wrong_offset_is_integrity_error() -> None:
    key, data = generate_key(), bytes(range(80))
    ct = encrypt(key, data)
    plan = plan_range(parse_header(ct), 80, 16, 31)  # segment 1
    shifted = ct[plan.ciphertext_start + SEG + 16 : plan.ciphertext_end + SEG + 17]  # segment 2
    with pytest.raises(IntegrityError):
        range_read(key, ct, 80, 16, 31, shifted)


def pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


MULTI_SEGMENT = st.integers(SEG + 1, 6 * SEG)  # 2 to 6 segments


@FAST
@given(data=st.data(), n=MULTI_SEGMENT)
def test_any_permutation_of_segments_is_integrity_error(data: st.DataObject, n: int) -> None:
    key = generate_key()
    header, segments = cut(encrypt(key, pattern(n)))
    identity = list(range(len(segments)))
    order = data.draw(st.permutations(identity).filter(lambda p: list(p) != identity))
    with pytest.raises(IntegrityError):
        decrypt(key, header + b"".join(segments[i] for i in order))


@FAST
@given(data=st.data(), n=MULTI_SEGMENT, insert=st.booleans())
def test_any_duplicated_segment_is_integrity_error(
    data: st.DataObject, n: int, insert: bool
) -> None:
    key = generate_key()
    header, segments = cut(encrypt(key, pattern(n)))
    source = data.draw(st.integers(0, len(segments) - 1), label="source")
    if insert:
        at = data.draw(st.integers(0, len(segments)), label="insert at")
        altered = [*segments[:at], segments[source], *segments[at:]]
    else:
        at = data.draw(st.integers(0, len(segments) - 1).filter(lambda i: i != source))
        altered = [*segments[:at], segments[source], *segments[at + 1 :]]
    with pytest.raises(IntegrityError):
        decrypt(key, header + b"".join(altered))


@FAST
@given(n=MULTI_SEGMENT, other_n=st.integers(0, 6 * SEG), same_key=st.booleans())
def test_any_header_from_another_object_is_integrity_error(
    n: int, other_n: int, same_key: bool
) -> None:
    key = generate_key()
    other_key = key if same_key else generate_key()
    _, segments = cut(encrypt(key, pattern(n)))
    other_header, _ = cut(encrypt(other_key, pattern(other_n)))  # same context either way
    spliced = other_header + b"".join(segments)
    with pytest.raises(IntegrityError):
        decrypt(key, spliced)
    with pytest.raises(IntegrityError):
        decrypt(other_key, spliced)  # the header's own key passes the commitment


def test_segment_count_limit_is_enforced_at_its_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    """FORMAT.md: at most MAX_SEGMENTS segments (the index is 32 bits); the limit is
    lowered here to reach it. One more than the limit: encryption refuses, decryption of
    a longer object (made before the limit was lowered) is an integrity error."""
    key = generate_key()
    at_limit, over_limit = b"x" * (3 * SEG), b"x" * (3 * SEG + 1)
    longer = encrypt(key, over_limit)
    monkeypatch.setattr("crypto.stream.MAX_SEGMENTS", 3)
    assert decrypt(key, encrypt(key, at_limit)) == at_limit
    with pytest.raises(ValueError, match="maximum number of segments"):
        encrypt(key, over_limit)
    with pytest.raises(IntegrityError):
        decrypt(key, longer)
