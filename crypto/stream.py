"""Streaming AEAD for artefacts of any size (after Tink's AES-GCM-HKDF streaming AEAD).

Object = header ‖ segment 0 ‖ … ‖ segment n-1 (FORMAT.md, "Stream"). Header:

    0xC3 ‖ key id length (1) ‖ key id (UTF-8) ‖ segment size (u32 BE) ‖ salt (32)
         ‖ nonce prefix (7) ‖ key commitment (32)

Segment i = AES-256-GCM(segment key, nonce = prefix ‖ u32 BE i ‖ last flag,
aad = header ‖ DVKC 02 context encoding, which names the object). The commitment is
derived from the data key and salt with every header byte before it and the DVKC 02
encoding in its label, and checked before any segment opens, so a header or context
changed in any byte is refused there. `C2` (commitment over key and salt only) and `C1`
(also the DVKC 01 encoding, no object) have the same layout and their own labels; they
are no longer written and still open. Every segment but the last holds exactly
``segment_size`` plaintext bytes; the last holds 1..segment_size (a multiple of the
segment size ends with a full last segment, no empty one), and only the empty object has
an empty (tag-only) last segment.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import struct
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Sequence,
)
from typing import Final, NamedTuple

from crypto import _primitives, _stream_layout
from crypto._primitives import Aead, Buffer, RandomSource
from crypto._stream_layout import (
    FIXED_HEADER_SIZE,
    STREAM_V1,
    STREAM_V2,
    STREAM_V3,
    RangePlan,
    StreamHeader,
    check_segment_size,
    ciphertext_size,
    header_fields,
    header_size,
    key_id_bytes,
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
    "RangeOpener",
    "RangePlan",
    "StreamHeader",
    "StreamOpener",
    "StreamSealer",
    "ciphertext_size",
    "decrypt_range",
    "decrypt_stream",
    "encrypt_stream",
    "header_size",
    "parse_header",
    "plaintext_size",
    "plan_range",
]


class _Version(NamedTuple):
    segment_key_label: bytes
    commitment_label: bytes
    associated_data: Callable[[KeyContext], bytes]  # after the header, in every segment's AAD
    # The commitment's HKDF info is its label ‖ the header before the commitment ‖ the
    # associated data (C3), or the label alone (C1, C2: key and salt only, FORMAT.md).
    commitment_covers_header: bool


# Every stream version a reader opens, in one table: parse_header refuses any other byte.
_VERSIONS: Final = {
    # Written before contexts named objects: read with the object left out.
    STREAM_V1: _Version(
        b"datavault/stream/v1/segment-key",
        b"datavault/stream/v1/commitment",
        KeyContext.encode_v1_ignoring_object,
        commitment_covers_header=False,
    ),
    # Written before the commitment covered the header: its other fields are checked
    # only by the segments' tags.
    STREAM_V2: _Version(
        b"datavault/stream/v2/segment-key",
        b"datavault/stream/v2/commitment",
        KeyContext.encode_v2,
        commitment_covers_header=False,
    ),
    STREAM_V3: _Version(
        b"datavault/stream/v3/segment-key",
        b"datavault/stream/v3/commitment",
        KeyContext.encode_v2,
        commitment_covers_header=True,
    ),
}
# What every new stream is sealed as (the older versions are written only by the vectors).
_WRITTEN: Final = STREAM_V3
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


# Segments opened ahead of the one being yielded when they are opened elsewhere (`open_in`).
OPEN_AHEAD: Final = 2


async def decrypt_range(
    data_key: SecretBytes,
    context: KeyContext,
    header_bytes: bytes,
    segments: AsyncIterable[bytes],
    plan: RangePlan,
    open_in: Callable[[Callable[[], bytes]], Awaitable[bytes]] | None = None,
) -> AsyncGenerator[bytes, None]:
    """Yield exactly the planned plaintext range. ``segments`` is the ciphertext of
    bytes plan.ciphertext_start..plan.ciphertext_end, in any chunking (pieces of exactly
    one segment's ciphertext are opened without a copy). ``open_in``: where each segment
    is opened (a thread of the caller's: AES-GCM releases the GIL), up to OPEN_AHEAD
    ahead of the one yielded; None: here, one at a time."""
    opener = RangeOpener(data_key, context, header_bytes, plan)
    opening: collections.deque[Awaitable[bytes]] = collections.deque()
    try:
        async for unit, _ in _units(segments, plan.segment_size + GCM_TAG_SIZE):
            job = opener.next_job(unit)
            if open_in is None:
                yield opener.trim(job())
                continue
            opening.append(open_in(job))
            while len(opening) >= OPEN_AHEAD:
                yield opener.trim(await opening.popleft())
        while opening:
            yield opener.trim(await opening.popleft())
    finally:
        if opening:  # stopped early: let what was handed out finish before returning
            await asyncio.gather(*opening, return_exceptions=True)
    opener.finish()


class RangeOpener:
    """The planned segments of one range read, opened in order: `open_next(unit)` takes
    the next planned segment's whole ciphertext and returns exactly its part of the range
    (IntegrityError for a unit that is not that segment: wrong length, one too many, or
    not authentic), and `finish()` raises IntegrityError unless every planned segment
    came. The header's key commitment is checked when it is made.

    Where the segments are read one by one on a thread (an S3 read's own), that thread
    calls `open_next` on each as it reads it: one thread reads and opens, and only
    plaintext is handed on. Not thread-safe: one caller at a time, in order (`finish`
    after the last `open_next` has returned). decrypt_range runs on it, so the checks
    are the same wherever a range is opened."""

    __slots__ = ("_cipher", "_index", "_plan", "_remaining", "_skip")

    def __init__(
        self, data_key: SecretBytes, context: KeyContext, header_bytes: bytes, plan: RangePlan
    ) -> None:
        header = parse_header(header_bytes)
        if plan.segment_size != header.segment_size or plan.header_size != header.size:
            raise ValueError("the range plan was made for another header")
        self._cipher = _SegmentCipher.for_reading(data_key, context, header)
        self._plan = plan
        self._index = plan.first_segment
        self._skip = plan.skip
        self._remaining = plan.length

    def open_next(self, unit: Buffer) -> bytes:
        return self.trim(self.next_job(unit)())

    def next_job(self, unit: Buffer) -> Callable[[], bytes]:
        """Check that `unit` can be the next planned segment; the call that opens it
        (to run anywhere, but its result trimmed in order)."""
        plan, index = self._plan, self._index
        if index > plan.last_segment or len(unit) != plan.segment_ciphertext_len(index):
            raise IntegrityError()
        self._index += 1
        return functools.partial(self._cipher.open, unit, index, index == plan.segment_count - 1)

    def trim(self, plaintext: bytes) -> bytes:
        """The range's part of the next opened segment (whole, but for the first and last)."""
        if self._skip or self._remaining < len(plaintext):
            plaintext = plaintext[self._skip : self._skip + self._remaining]
            self._skip = 0
        self._remaining -= len(plaintext)
        return plaintext

    def finish(self) -> None:
        if self._index != self._plan.last_segment + 1:
            raise IntegrityError()


async def _encrypt_stream_with(
    data_key: SecretBytes,
    context: KeyContext,
    chunks: AsyncIterable[bytes],
    segment_size: int,
    rng: RandomSource,
    version: int = _WRITTEN,
) -> AsyncIterator[bytes]:
    # Deterministic randomness and older versions are asked for only by the test vectors.
    sealer = StreamSealer._with(data_key, context, segment_size, rng, version)
    yield sealer.header
    async for unit, last in _units(chunks, segment_size):
        yield sealer.seal(unit, last=last)


class StreamSealer:
    """One new stream, sealed segment by segment where the caller chooses (a thread of
    its own: AES-GCM releases the GIL). `header` comes first; then `seal` each segment
    in order: exactly `segment_size` plaintext bytes each, but the last, which holds
    1..segment_size (0 only for the empty object) and is sealed with `last=True`, once.
    Anything else raises ValueError, so no caller can write a stream that will not open.
    A fresh sealer (a fresh salt, hence fresh keys and nonces) for every upload attempt."""

    __slots__ = ("_cipher", "_done", "_index", "_segment_size", "header")

    def __init__(
        self,
        data_key: SecretBytes,
        context: KeyContext,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
    ) -> None:
        self._setup(data_key, context, segment_size, _primitives.random_bytes, _WRITTEN)

    @classmethod
    def _with(
        cls, data_key: SecretBytes, context: KeyContext, segment_size: int, rng: RandomSource,
        version: int,
    ) -> StreamSealer:  # fmt: skip
        sealer = cls.__new__(cls)
        sealer._setup(data_key, context, segment_size, rng, version)
        return sealer

    def _setup(
        self, data_key: SecretBytes, context: KeyContext, segment_size: int, rng: RandomSource,
        version: int,
    ) -> None:  # fmt: skip
        ikm = require_key(data_key)
        check_segment_size(segment_size)
        salt = rng(SALT_SIZE)
        prefix = rng(STREAM_NONCE_PREFIX_SIZE)
        key_id = key_id_bytes(context).decode("utf-8")
        fields = header_fields(version, key_id, segment_size, salt, prefix)
        associated = _VERSIONS[version].associated_data(context)
        segment_key, commitment = _derive(version, ikm, salt, fields, associated)
        self.header = fields + commitment
        self._cipher = _SegmentCipher(segment_key, prefix, self.header + associated)
        self._segment_size = segment_size
        self._index = 0
        self._done = False

    @property
    def segment_size(self) -> int:
        return self._segment_size

    def seal(self, plaintext: Buffer, *, last: bool) -> bytes:
        self._check_next(len(memoryview(plaintext)), last)
        sealed = self._cipher.seal(plaintext, self._index, last)
        self._index += 1
        self._done = last
        return sealed

    def seal_parts(self, parts: Sequence[Buffer], *, last: bool) -> bytes | bytearray:
        """`seal` of one segment's plaintext given as consecutive parts (as an upload's
        body arrived), without joining them: the same bytes as `seal(b"".join(parts))`."""
        self._check_next(sum(len(memoryview(part)) for part in parts), last)
        if len(parts) == 1:
            sealed: bytes | bytearray = self._cipher.seal(parts[0], self._index, last)
        else:
            sealed = self._cipher.seal_parts(parts, self._index, last)
        self._index += 1
        self._done = last
        return sealed

    def _check_next(self, size: int, last: bool) -> None:
        if self._done:
            raise ValueError("the stream's last segment was sealed already")
        if self._index >= MAX_SEGMENTS:
            raise ValueError("object exceeds the format's maximum number of segments")
        if size > self._segment_size or (not last and size != self._segment_size):
            raise ValueError("every segment but the last holds exactly segment_size bytes")
        if last and size == 0 and self._index > 0:
            raise ValueError("only the empty object ends with an empty segment")


class StreamOpener:
    """The segments of one stream opened where the caller chooses (see StreamSealer),
    from its header: the key commitment is checked here, before any segment opens.
    `open(ciphertext, index, last)` raises IntegrityError for a segment that is not that
    segment of this stream (moved, truncated, flagged wrong, or another key's)."""

    __slots__ = ("_cipher", "segment_size")

    def __init__(self, data_key: SecretBytes, context: KeyContext, header_bytes: bytes) -> None:
        header = parse_header(header_bytes)
        self._cipher = _SegmentCipher.for_reading(data_key, context, header)
        self.segment_size = header.segment_size

    def open(self, ciphertext: Buffer, index: int, last: bool) -> bytes:
        if not 0 <= index < MAX_SEGMENTS:
            raise IntegrityError()
        return self._cipher.open(ciphertext, index, last)


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
        fields = header.fields
        associated = _VERSIONS[header.version].associated_data(context)
        segment_key, commitment = _derive(
            header.version, require_key(data_key), header.salt, fields, associated
        )
        # Key commitment first: no segment is opened under a key the header did not name
        # (nor, for C3, under a header or context other than the ones it was sealed with).
        if header.key_id != context.key_id or not _primitives.constant_time_equal(
            commitment, header.commitment
        ):
            raise IntegrityError()
        return cls(segment_key, header.nonce_prefix, fields + header.commitment + associated)

    def seal(self, plaintext: Buffer, index: int, last: bool) -> bytes:
        return self._aead.seal(self._prefix + _NONCE_TAIL.pack(index, last), plaintext, self._aad)

    def seal_parts(self, parts: Sequence[Buffer], index: int, last: bool) -> bytearray:
        nonce = self._prefix + _NONCE_TAIL.pack(index, last)
        return self._aead.seal_parts(nonce, parts, self._aad)

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


def parse_header(data: bytes) -> StreamHeader:
    """Parse the header at the start of ``data`` (trailing bytes are ignored); a version
    byte not in the table is an IntegrityError. Untrusted until an opener checks its
    commitment (a C1 or C2 header's other fields: until a segment opens)."""
    return _stream_layout.parse_header(data, _VERSIONS)


def _derive(
    version: int, ikm: bytes, salt: bytes, fields: bytes, associated: bytes
) -> tuple[bytes, bytes]:
    """(segment key, commitment). ``fields`` (self-delimiting) and ``associated`` (the
    DVKC encoding, injective) enter the commitment's info where the version says so, so
    two different (header, context) pairs never share a commitment input."""
    spec = _VERSIONS[version]
    segment_key = _primitives.hkdf_sha256(ikm, salt, spec.segment_key_label, KEY_SIZE)
    info = spec.commitment_label
    if spec.commitment_covers_header:
        info += fields + associated
    return segment_key, _primitives.hkdf_sha256(ikm, salt, info, COMMITMENT_SIZE)
