"""Streaming AEAD for artefacts of any size (after Tink's AES-GCM-HKDF streaming AEAD).

Object = header ‖ segment 0 ‖ … ‖ segment n-1 (FORMAT.md, "Stream"). Header:

    0xC2 ‖ key id length (1) ‖ key id (UTF-8) ‖ segment size (u32 BE) ‖ salt (32)
         ‖ nonce prefix (7) ‖ key commitment (32)

Segment i = AES-256-GCM(segment key, nonce = prefix ‖ u32 BE i ‖ last flag,
aad = header ‖ DVKC 02 context encoding, which names the object). `C1` streams, written
before objects were bound, have the same layout with the DVKC 01 encoding (no object)
and their own labels; they still open. Every segment but the last holds exactly
``segment_size`` plaintext bytes; the last holds 1..segment_size (a multiple of the
segment size ends with a full last segment, no empty one), and only the empty object has
an empty (tag-only) last segment. The commitment is checked before any segment opens.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from typing import Final

from crypto import _primitives
from crypto._primitives import Aead, Buffer, RandomSource
from crypto._stream_layout import (
    FIXED_HEADER_SIZE,
    STREAM_V1,
    STREAM_V2,
    RangePlan,
    StreamHeader,
    check_segment_size,
    ciphertext_size,
    header_size,
    key_id_bytes,
    parse_header,
    plaintext_size,
    plan_range,
)
from crypto.context import KeyContext
from crypto.errors import IntegrityError
from crypto.limits import (
    COMMITMENT_SIZE,
    DEFAULT_SEGMENT_SIZE,
    GCM_TAG_SIZE,
    KEY_SIZE,
    MAX_SEGMENTS,
    SALT_SIZE,
    STREAM_NONCE_PREFIX_SIZE,
)
from crypto.secrets import SecretBytes, require_key

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "RangePlan",
    "StreamHeader",
    "ciphertext_size",
    "decrypt_range",
    "decrypt_stream",
    "encrypt_stream",
    "header_size",
    "parse_header",
    "plaintext_size",
    "plan_range",
]

# (segment key label, commitment label, associated data after the header) per version.
_VERSIONS: Final = {
    # Written before contexts named objects: read with the object left out.
    STREAM_V1: (
        b"datavault/stream/v1/segment-key",
        b"datavault/stream/v1/commitment",
        KeyContext.encode_v1_ignoring_object,
    ),
    STREAM_V2: (
        b"datavault/stream/v2/segment-key",
        b"datavault/stream/v2/commitment",
        KeyContext.encode_v2,
    ),
}
_NONCE_TAIL: Final = struct.Struct(">IB")  # segment index, last-segment flag


async def encrypt_stream(
    data_key: SecretBytes,
    context: KeyContext,
    chunks: AsyncIterable[bytes],
    segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> AsyncIterator[bytes]:
    """Yield the header, then one sealed segment at a time. Chunks may have any size,
    including zero. Use a fresh data key (or at least a fresh call) per upload attempt."""
    stream = _encrypt_stream_with(data_key, context, chunks, segment_size, _primitives.random_bytes)
    async for piece in stream:
        yield piece


async def decrypt_stream(
    data_key: SecretBytes, context: KeyContext, ciphertext_chunks: AsyncIterable[bytes]
) -> AsyncGenerator[bytes, None]:
    """Yield the plaintext of a whole object segment by segment. Each yielded piece is
    authentic, but truncation shows only at the end: treat an IntegrityError raised at any
    point as failure of the whole object (abort the response, discard the output)."""
    chunks = aiter(ciphertext_chunks)
    head = bytearray()
    need = 2
    while len(head) < need:
        try:
            head += await anext(chunks)
        except StopAsyncIteration:
            raise IntegrityError() from None
        if len(head) >= 2:
            need = FIXED_HEADER_SIZE + head[1]
    header = parse_header(bytes(head[:need]))
    cipher = _SegmentCipher.for_reading(data_key, context, header)
    index = 0
    units = _units(_prepend(bytes(head[need:]), chunks), header.segment_size + GCM_TAG_SIZE)
    async for unit, last in units:
        if index >= MAX_SEGMENTS:
            raise IntegrityError()
        yield cipher.open(unit, index, last)
        index += 1


async def decrypt_range(
    data_key: SecretBytes,
    context: KeyContext,
    header_bytes: bytes,
    segments: AsyncIterable[bytes],
    plan: RangePlan,
) -> AsyncGenerator[bytes, None]:
    """Yield exactly the planned plaintext range. ``segments`` is the ciphertext of
    bytes plan.ciphertext_start..plan.ciphertext_end, in any chunking."""
    header = parse_header(header_bytes)
    if plan.segment_size != header.segment_size or plan.header_size != header.size:
        raise ValueError("the range plan was made for another header")
    cipher = _SegmentCipher.for_reading(data_key, context, header)
    index, skip, remaining = plan.first_segment, plan.skip, plan.length
    async for unit, _ in _units(segments, header.segment_size + GCM_TAG_SIZE):
        if index > plan.last_segment or len(unit) != plan.segment_ciphertext_len(index):
            raise IntegrityError()
        plaintext = cipher.open(unit, index, index == plan.segment_count - 1)
        if skip or remaining < len(plaintext):
            plaintext = plaintext[skip : skip + remaining]
            skip = 0
        remaining -= len(plaintext)
        yield plaintext
        index += 1
    if index != plan.last_segment + 1:
        raise IntegrityError()


async def _encrypt_stream_with(
    data_key: SecretBytes,
    context: KeyContext,
    chunks: AsyncIterable[bytes],
    segment_size: int,
    rng: RandomSource,
    version: int = STREAM_V2,
) -> AsyncIterator[bytes]:
    # Deterministic randomness and older versions are asked for only by the test vectors.
    ikm = require_key(data_key)
    check_segment_size(segment_size)
    salt = rng(SALT_SIZE)
    prefix = rng(STREAM_NONCE_PREFIX_SIZE)
    segment_key, commitment = _derive(version, ikm, salt)
    key_id = key_id_bytes(context).decode("utf-8")
    header = StreamHeader(version, key_id, segment_size, salt, prefix, commitment).encode()
    cipher = _SegmentCipher(segment_key, prefix, header + _associated_data(version, context))
    yield header
    index = 0
    async for unit, last in _units(chunks, segment_size):
        if index >= MAX_SEGMENTS:
            raise ValueError("object exceeds the format's maximum number of segments")
        yield cipher.seal(unit, index, last)
        index += 1


class _SegmentCipher:
    __slots__ = ("_aad", "_aead", "_prefix")

    def __init__(self, segment_key: bytes, prefix: bytes, aad: bytes) -> None:
        self._aead = Aead(segment_key)  # once per stream: key schedule is not free
        self._prefix = prefix
        self._aad = aad

    @classmethod
    def for_reading(
        cls, data_key: SecretBytes, context: KeyContext, header: StreamHeader
    ) -> _SegmentCipher:
        segment_key, commitment = _derive(header.version, require_key(data_key), header.salt)
        # Key commitment first: no segment is opened under a key the header did not name.
        if header.key_id != context.key_id or not _primitives.constant_time_equal(
            commitment, header.commitment
        ):
            raise IntegrityError()
        aad = header.encode() + _associated_data(header.version, context)
        return cls(segment_key, header.nonce_prefix, aad)

    def seal(self, plaintext: Buffer, index: int, last: bool) -> bytes:
        return self._aead.seal(self._prefix + _NONCE_TAIL.pack(index, last), plaintext, self._aad)

    def open(self, ciphertext: Buffer, index: int, last: bool) -> bytes:
        return self._aead.open(self._prefix + _NONCE_TAIL.pack(index, last), ciphertext, self._aad)


async def _units(chunks: AsyncIterable[bytes], size: int) -> AsyncIterator[tuple[Buffer, bool]]:
    """Regroup chunks of any size into units of ``size`` bytes, flagging the final unit
    (which holds 0..size bytes). Whole units inside a chunk are passed on as zero-copy
    views; at most one held unit and one partial unit are buffered."""
    held: Buffer | None = None  # a full unit; whether it is the final one is not known yet
    carry = bytearray()  # a partial unit being assembled, always < size bytes
    async for chunk in chunks:
        if not chunk:
            continue
        # A producer may reuse a mutable buffer once asked for the next chunk, so only
        # immutable bytes are referenced without copying.
        view = memoryview(chunk if type(chunk) is bytes else bytes(chunk))
        if held is not None:
            yield held, False
            held = None
        if carry:
            take = size - len(carry)
            carry += view[:take]
            view = view[take:]
            if len(carry) < size:
                continue
            if not view:
                held, carry = carry, bytearray()
                continue
            yield carry, False
            carry = bytearray()
        while len(view) > size:
            yield view[:size], False
            view = view[size:]
        if len(view) == size:
            held = view
        else:
            carry += view
    yield (held, True) if held is not None else (carry, True)


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk


def _derive(version: int, ikm: bytes, salt: bytes) -> tuple[bytes, bytes]:
    key_label, commitment_label, _ = _VERSIONS[version]
    segment_key = _primitives.hkdf_sha256(ikm, salt, key_label, KEY_SIZE)
    return segment_key, _primitives.hkdf_sha256(ikm, salt, commitment_label, COMMITMENT_SIZE)


def _associated_data(version: int, context: KeyContext) -> bytes:
    return _VERSIONS[version][2](context)
