"""Byte layout of the streaming format: header, sizes and range plans (no cryptography).

See crypto/stream.py for the format summary and FORMAT.md for the full specification.
"""

from __future__ import annotations

import struct
from collections.abc import Container
from dataclasses import dataclass
from typing import Final

from crypto.context import KeyContext
from crypto.errors import IntegrityError
from crypto.limits import (
    COMMITMENT_SIZE,
    DEFAULT_SEGMENT_SIZE,
    GCM_TAG_SIZE,
    MAX_KEY_ID_BYTES,
    MAX_SEGMENT_SIZE,
    MAX_SEGMENTS,
    MIN_SEGMENT_SIZE,
    SALT_SIZE,
    STREAM_NONCE_PREFIX_SIZE,
)

# The version bytes; what each means (labels, associated data, what the commitment
# covers) is crypto/stream.py's table, the one place readers and writers look it up.
STREAM_V1: Final = 0xC1
"""Segments authenticate header ‖ DVKC 01 (no object). Read only; never written now."""
STREAM_V2: Final = 0xC2
"""Segments authenticate header ‖ DVKC 02 (the object included); the commitment covers
the data key and salt only. Read only; never written now."""
STREAM_V3: Final = 0xC3
"""As C2, and the commitment also covers every header field before it and the DVKC 02
encoding, so a changed header or context is refused before any segment is read."""
FIXED_HEADER_SIZE: Final = 1 + 1 + 4 + SALT_SIZE + STREAM_NONCE_PREFIX_SIZE + COMMITMENT_SIZE
_U32: Final = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class StreamHeader:
    version: int
    key_id: str
    segment_size: int
    salt: bytes
    nonce_prefix: bytes
    commitment: bytes

    @property
    def size(self) -> int:
        return FIXED_HEADER_SIZE + len(self.key_id.encode("utf-8"))

    @property
    def fields(self) -> bytes:
        """The header's bytes before the commitment (what a C3 commitment covers)."""
        return header_fields(
            self.version, self.key_id, self.segment_size, self.salt, self.nonce_prefix
        )

    def encode(self) -> bytes:
        return self.fields + self.commitment


def header_fields(
    version: int, key_id: str, segment_size: int, salt: bytes, nonce_prefix: bytes
) -> bytes:
    """version ‖ u8 len ‖ key id ‖ u32 segment size ‖ salt ‖ nonce prefix: self-delimiting
    (the length byte says where the key id ends, the rest is fixed), so these bytes
    followed by anything else still name each field unambiguously."""
    raw_key_id = key_id.encode("utf-8")
    return b"".join(
        (bytes([version, len(raw_key_id)]), raw_key_id, _U32.pack(segment_size), salt, nonce_prefix)
    )


@dataclass(frozen=True, slots=True)
class RangePlan:
    """Which ciphertext bytes a range read needs. Offsets are absolute in the object and
    ``ciphertext_end`` is inclusive, as in an HTTP ``Range: bytes=start-end`` header."""

    plaintext_len: int
    segment_size: int
    header_size: int
    segment_count: int
    first_segment: int
    last_segment: int
    ciphertext_start: int
    ciphertext_end: int
    skip: int  # plaintext bytes to drop from the first decrypted segment
    length: int  # plaintext bytes the read yields

    def segment_ciphertext_len(self, index: int) -> int:
        return segment_ciphertext_len(self.plaintext_len, self.segment_size, index)


def header_size(context: KeyContext) -> int:
    return FIXED_HEADER_SIZE + len(key_id_bytes(context))


def parse_header(data: bytes, versions: Container[int]) -> StreamHeader:
    """Parse the header at the start of ``data`` (trailing bytes are ignored), refusing a
    version byte not in ``versions`` (crypto/stream.py's table: call its parse_header).
    Untrusted until the key commitment is checked (and, for C1/C2, whose commitment does
    not cover the other fields, until a segment opens)."""
    if len(data) < FIXED_HEADER_SIZE or data[0] not in versions:
        raise IntegrityError()
    at = 2 + data[1]
    if len(data) < FIXED_HEADER_SIZE + data[1]:
        raise IntegrityError()
    try:
        key_id = bytes(data[2:at]).decode("utf-8")
    except UnicodeDecodeError:
        raise IntegrityError() from None
    (segment_size,) = _U32.unpack_from(data, at)
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise IntegrityError()
    at += 4
    salt = bytes(data[at : at + SALT_SIZE])
    at += SALT_SIZE
    prefix = bytes(data[at : at + STREAM_NONCE_PREFIX_SIZE])
    at += STREAM_NONCE_PREFIX_SIZE
    commitment = bytes(data[at : at + COMMITMENT_SIZE])
    return StreamHeader(data[0], key_id, segment_size, salt, prefix, commitment)


def ciphertext_size(
    plaintext_size: int, context: KeyContext, segment_size: int = DEFAULT_SEGMENT_SIZE
) -> int:
    """Total object size (header included) for ``plaintext_size`` bytes."""
    check_segment_size(segment_size)
    if plaintext_size < 0:
        raise ValueError("plaintext size must be >= 0")
    return (
        header_size(context)
        + plaintext_size
        + segment_count(plaintext_size, segment_size) * GCM_TAG_SIZE
    )


def plaintext_size(ciphertext_size: int, header: StreamHeader) -> int:
    """Plaintext size of a whole object of ``ciphertext_size`` bytes (header included);
    IntegrityError if no object of that size can exist."""
    body = ciphertext_size - header.size
    full = header.segment_size + GCM_TAG_SIZE
    if body < GCM_TAG_SIZE:
        raise IntegrityError()
    count = -(-body // full)
    final = body - (count - 1) * full
    if count > MAX_SEGMENTS or final < GCM_TAG_SIZE or (count > 1 and final == GCM_TAG_SIZE):
        raise IntegrityError()
    return body - count * GCM_TAG_SIZE


def plan_range(
    header: StreamHeader,
    plaintext_len: int,
    start: int,
    end_inclusive: int,
    *,
    segment_size: int | None = None,
) -> RangePlan:
    """Plan a read of plaintext[start:end_inclusive + 1] of an object holding
    ``plaintext_len`` bytes (from metadata; it says which segment must carry the last flag,
    so a range that includes the end still detects truncation).

    This is where the stored header meets the metadata: a header that cannot hold
    ``plaintext_len`` (more than 2**32 segments of its size), or whose segment size is not
    ``segment_size`` (the size the metadata records it was written with, when given), is
    an IntegrityError like any other altered byte. A C1 or C2 commitment does not cover
    the segment size (FORMAT.md), so for those without the second check a rewritten size
    would be found only by the first segment's tag, after reading and opening up to
    64 MiB; a C3 header's commitment refuses it when the opener is made in any case."""
    if not 0 <= start <= end_inclusive < plaintext_len:
        raise ValueError("range must satisfy 0 <= start <= end < plaintext length")
    seg = header.segment_size
    if segment_size is not None and seg != segment_size:
        raise IntegrityError()
    count = segment_count(plaintext_len, seg)
    if count > MAX_SEGMENTS:
        raise IntegrityError()
    first, last = start // seg, end_inclusive // seg
    full = seg + GCM_TAG_SIZE
    last_end = header.size + last * full + segment_ciphertext_len(plaintext_len, seg, last)
    return RangePlan(
        plaintext_len=plaintext_len,
        segment_size=seg,
        header_size=header.size,
        segment_count=count,
        first_segment=first,
        last_segment=last,
        ciphertext_start=header.size + first * full,
        ciphertext_end=last_end - 1,
        skip=start - first * seg,
        length=end_inclusive - start + 1,
    )


def segment_count(plaintext_len: int, segment_size: int) -> int:
    return max(1, -(-plaintext_len // segment_size))


def segment_ciphertext_len(plaintext_len: int, segment_size: int, index: int) -> int:
    if index == segment_count(plaintext_len, segment_size) - 1:
        return plaintext_len - index * segment_size + GCM_TAG_SIZE
    return segment_size + GCM_TAG_SIZE


def check_segment_size(segment_size: int) -> None:
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise ValueError(f"segment size must be in [{MIN_SEGMENT_SIZE}, {MAX_SEGMENT_SIZE}]")


def key_id_bytes(context: KeyContext) -> bytes:
    key_id = context.key_id.encode("utf-8")
    if len(key_id) > MAX_KEY_ID_BYTES:
        raise ValueError(f"a streamed object's key id is at most {MAX_KEY_ID_BYTES} bytes")
    return key_id
