"""C3's key commitment covers the whole header and the context (FORMAT.md, "Stream v3").

Red team 19, finding 4: under C1/C2 the commitment covers the data key and salt only, so a
header whose segment size, nonce prefix or key id was rewritten in storage (or a blob read
under another artefact's context) passes every check made before a segment is read, and
fails only at the first segment's tag, after up to 64 MiB were read and decrypted. Under
C3 every such change is refused when the opener is made: each test here gives the readers
the header alone, or a segment source that records whether it was ever pulled from."""

from __future__ import annotations

import asyncio
import dataclasses
import struct
from collections.abc import AsyncIterator

import pytest

from crypto._primitives import random_bytes
from crypto._stream_layout import STREAM_V1, STREAM_V2, STREAM_V3
from crypto.context import OBJECT_ARTEFACT, PURPOSE_ARTEFACT, KeyContext, ObjectIdentity
from crypto.errors import IntegrityError
from crypto.limits import GCM_TAG_SIZE, MAX_SEGMENT_SIZE, SALT_SIZE, STREAM_NONCE_PREFIX_SIZE
from crypto.secrets import SecretBytes, generate_key
from crypto.stream import (
    RangeOpener,
    StreamOpener,
    _encrypt_stream_with,
    decrypt_range,
    decrypt_stream,
    parse_header,
    plan_range,
)

SEG = 16
ARTEFACT = ObjectIdentity(OBJECT_ARTEFACT, "0b5e7f4c-8a8e-4a43-9d1a-6f1d2b3c4d5e")
OTHER_ARTEFACT = ObjectIdentity(OBJECT_ARTEFACT, "1c6f8a5d-9b9f-4b54-8e2b-7a2e3c4d5e6f")
CONTEXT = KeyContext(
    PURPOSE_ARTEFACT, "tenant-a", "subject-1", "recordings", 1, "dk-7", 1, ARTEFACT
)
DATA = bytes(range(SEG * 3 + 5))  # three full segments and a 5-byte last one


def _sealed(key: SecretBytes, version: int) -> bytes:
    async def run() -> bytes:
        chunks = _source([DATA])
        stream = _encrypt_stream_with(key, CONTEXT, chunks, SEG, random_bytes, version)
        return b"".join([piece async for piece in stream])

    return asyncio.run(run())


async def _source(chunks: list[bytes], pulled: list[int] | None = None) -> AsyncIterator[bytes]:
    for index, chunk in enumerate(chunks):
        if pulled is not None:
            pulled.append(index)
        yield chunk


def _rewritten(blob: bytes, field: str) -> bytes:
    """``blob`` with one header field changed as a writer to the store could change it."""
    raw = bytearray(blob)
    at = 2 + raw[1]  # the segment size
    if field == "segment-size-32":
        raw[at : at + 4] = struct.pack(">I", 2 * SEG)
    elif field == "segment-size-1mib":
        raw[at : at + 4] = struct.pack(">I", 1024 * 1024)
    elif field == "segment-size-64mib":
        raw[at : at + 4] = struct.pack(">I", MAX_SEGMENT_SIZE)
    elif field == "salt":
        raw[at + 4] ^= 0x01
    elif field == "nonce-prefix":
        raw[at + 4 + SALT_SIZE] ^= 0x01
    elif field == "downgrade-to-c2":
        raw[0] = STREAM_V2
    elif field == "downgrade-to-c1":
        raw[0] = STREAM_V1
    else:
        raise AssertionError(field)
    return bytes(raw)


FIELDS = [
    "segment-size-32",
    "segment-size-1mib",
    "segment-size-64mib",
    "salt",
    "nonce-prefix",
    "downgrade-to-c2",
    "downgrade-to-c1",
]


def _header(blob: bytes) -> bytes:
    return blob[: parse_header(blob).size]


def _refused_by_every_reader_before_any_segment(
    key: SecretBytes, blob: bytes, context: KeyContext = CONTEXT
) -> None:
    """Each reader given the header, and segments only from a source that records any
    pull: each raises IntegrityError, and nothing after the header was asked for."""
    header = _header(blob)
    body = blob[len(header) :]
    with pytest.raises(IntegrityError):
        StreamOpener(key, context, header)
    plan = plan_range(parse_header(header), len(DATA), 0, 3)  # planned from the lying header
    with pytest.raises(IntegrityError):
        RangeOpener(key, context, header, plan)

    async def whole() -> list[int]:
        pulled: list[int] = []
        with pytest.raises(IntegrityError):
            async for _ in decrypt_stream(key, context, _source([header, body], pulled)):
                pass
        return pulled

    assert asyncio.run(whole()) == [0]  # the header only: the segments never pulled

    async def ranged() -> list[int]:
        pulled: list[int] = []
        piece = blob[plan.ciphertext_start : plan.ciphertext_end + 1]
        with pytest.raises(IntegrityError):
            async for _ in decrypt_range(key, context, header, _source([piece], pulled), plan):
                pass
        return pulled

    assert asyncio.run(ranged()) == []


@pytest.mark.parametrize("field", FIELDS)
def test_a_rewritten_c3_header_field_is_refused_before_any_segment_is_read(field: str) -> None:
    key = generate_key()
    _refused_by_every_reader_before_any_segment(key, _rewritten(_sealed(key, STREAM_V3), field))


def test_every_byte_of_a_c3_header_changed_is_refused_before_any_segment_is_read() -> None:
    """Version, key id (its length byte included), segment size, salt, nonce prefix and
    commitment, one byte at a time: refused when the header is parsed or the opener made
    (a changed length byte moves where parsing reads every later field)."""
    key = generate_key()
    blob = _sealed(key, STREAM_V3)
    size = parse_header(blob).size
    for at in range(size):
        changed = bytearray(blob)
        changed[at] ^= 0x01
        with pytest.raises(IntegrityError):
            StreamOpener(key, CONTEXT, bytes(changed[:size]))


def test_a_c3_header_rewritten_to_another_key_id_with_its_reader_is_refused() -> None:
    """The header's key id must equal the reader's (every version checks that); here the
    row's key id is changed with it, under the same data key. The C3 commitment covers
    both (the header and the DVKC 02 encoding), so the opener refuses the pair."""
    key = generate_key()
    blob = bytearray(_sealed(key, STREAM_V3))
    blob[2 : 2 + len(b"dk-7")] = b"dk-8"
    _refused_by_every_reader_before_any_segment(
        key, bytes(blob), dataclasses.replace(CONTEXT, key_id="dk-8")
    )


def test_a_c3_stream_read_as_another_artefact_is_refused_before_any_segment_is_read() -> None:
    """A blob (and its data key) moved onto another artefact's row: the context's object
    is in the C3 commitment, so the mismatch is found from the header alone."""
    key = generate_key()
    moved = dataclasses.replace(CONTEXT, object_identity=OTHER_ARTEFACT)
    _refused_by_every_reader_before_any_segment(key, _sealed(key, STREAM_V3), moved)


@pytest.mark.parametrize("to", [STREAM_V2, STREAM_V1], ids=["c2", "c1"])
def test_a_c3_stream_downgraded_does_not_open(to: int) -> None:
    """A downgrade to C2 (or C1), whose commitment does not cover the segment size, would
    let the size be rewritten again. It cannot open: the reader of a C2 header compares the
    stored value with HKDF(data key, salt, "datavault/stream/v2/commitment"), and the
    stored value is HKDF(data key, salt, "datavault/stream/v3/commitment" ‖ header ‖
    context), another output of a PRF keyed by the data key. Whoever can write the
    C2 value into the header has the data key, and could seal a whole new stream
    anyway. Were the commitment passed, every segment's tag would still fail: the version
    byte is part of the header each segment authenticates, and the labels give C2 another
    segment key."""
    key = generate_key()
    blob = bytearray(_sealed(key, STREAM_V3))
    blob[0] = to
    _refused_by_every_reader_before_any_segment(key, bytes(blob))
    with pytest.raises(IntegrityError):  # and as a whole, from one chunk
        asyncio.run(_drain(decrypt_stream(key, CONTEXT, _source([bytes(blob)]))))


def test_a_c2_stream_upgraded_to_c3_does_not_open() -> None:
    """A C2 header relabelled C3: its stored commitment has the C2 label and covers no
    header field, so it is not the C3 value of the same key, salt and header."""
    key = generate_key()
    blob = bytearray(_sealed(key, STREAM_V2))
    assert _drained(key, bytes(blob)) == DATA  # as written, it opens
    blob[0] = STREAM_V3
    _refused_by_every_reader_before_any_segment(key, bytes(blob))


@pytest.mark.parametrize("field", ["segment-size-32", "segment-size-64mib", "nonce-prefix"])
def test_a_c2_header_lie_passes_the_opener_and_fails_only_at_a_segment(field: str) -> None:
    """What C2 still does not do (FORMAT.md): its commitment covers the data key and salt
    only, so these lies pass the opener and are found by the first segment's tag. The
    contrast shows the C3 tests above can fail; the vault still checks a C2 header's
    segment size against its row before reading (plan_range's segment_size)."""
    key = generate_key()
    blob = _rewritten(_sealed(key, STREAM_V2), field)
    opener = StreamOpener(key, CONTEXT, _header(blob))  # accepted: nothing checked it
    first = blob[len(_header(blob)) :][: opener.segment_size + GCM_TAG_SIZE]
    with pytest.raises(IntegrityError):
        opener.open(first, 0, len(first) < opener.segment_size + GCM_TAG_SIZE)


def test_a_c2_stream_read_as_another_artefact_passes_the_opener() -> None:
    key = generate_key()
    moved = dataclasses.replace(CONTEXT, object_identity=OTHER_ARTEFACT)
    blob = _sealed(key, STREAM_V2)
    StreamOpener(key, moved, _header(blob))  # accepted; the segments' tags refuse it
    with pytest.raises(IntegrityError):
        asyncio.run(_drain(decrypt_stream(key, moved, _source([blob]))))


def test_c3_headers_are_the_same_size_as_c2_so_range_plans_do_not_change() -> None:
    key = generate_key()
    c2, c3 = parse_header(_sealed(key, STREAM_V2)), parse_header(_sealed(key, STREAM_V3))
    assert c3.size == c2.size and len(c3.nonce_prefix) == STREAM_NONCE_PREFIX_SIZE
    assert plan_range(c3, len(DATA), 20, 40) == plan_range(c2, len(DATA), 20, 40)


async def _drain(pieces: AsyncIterator[bytes]) -> bytes:
    return b"".join([piece async for piece in pieces])


def _drained(key: SecretBytes, blob: bytes) -> bytes:
    return asyncio.run(_drain(decrypt_stream(key, CONTEXT, _source([blob]))))
