"""Red team 19: the ciphertext formats attacked byte by byte with real keys (FORMAT.md).

What a stored header may claim is untrusted until a segment opens; every lie about it,
every cut, reorder or splice of the segments, and every moved key wrap must end in the
one IntegrityError (its one fixed message: nothing about keys, nonces or plaintext), never in
other plaintext, a shortened plaintext, or another exception type."""

from __future__ import annotations

import asyncio
import dataclasses
import struct
from collections.abc import AsyncIterable, AsyncIterator, Iterable

import pytest

from crypto._stream_layout import FIXED_HEADER_SIZE, STREAM_V1, STREAM_V2
from crypto.context import OBJECT_ARTEFACT, PURPOSE_ARTEFACT, KeyContext, ObjectIdentity
from crypto.errors import IntegrityError
from crypto.keywrap import rewrap_key, unwrap_key, wrap_key
from crypto.limits import GCM_TAG_SIZE, MAX_SEGMENT_SIZE, MAX_SEGMENTS, MIN_SEGMENT_SIZE
from crypto.records import open_record, seal_record
from crypto.secrets import SecretBytes, generate_key
from crypto.stream import (
    RangeOpener,
    StreamSealer,
    decrypt_range,
    decrypt_stream,
    encrypt_stream,
    parse_header,
    plan_range,
)

SEG = 16
UNIT = SEG + GCM_TAG_SIZE
ARTEFACT = ObjectIdentity(OBJECT_ARTEFACT, "0b5e7f4c-8a8e-4a43-9d1a-6f1d2b3c4d5e")
CONTEXT = KeyContext(
    PURPOSE_ARTEFACT, "tenant-a", "subject-1", "recordings", 1, "dk-7", 1, ARTEFACT
)
DATA = bytes(range(SEG * 3 + 5))  # three full segments and a 5-byte last one


async def _agen(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _collect(pieces: AsyncIterable[bytes]) -> bytes:
    return b"".join([piece async for piece in pieces])


def _encrypt(key: SecretBytes, data: bytes = DATA) -> bytes:
    return asyncio.run(_collect(encrypt_stream(key, CONTEXT, _agen([data]), SEG)))


def _decrypt(key: SecretBytes, blob: bytes) -> bytes:
    return asyncio.run(_collect(decrypt_stream(key, CONTEXT, _agen([blob]))))


def _split(blob: bytes) -> tuple[bytes, list[bytes]]:
    size = parse_header(blob).size
    body = blob[size:]
    return blob[:size], [body[i : i + UNIT] for i in range(0, len(body), UNIT)]


def _ranged(key: SecretBytes, blob: bytes, start: int, end: int, size: int = len(DATA)) -> bytes:
    """A range read as the vault makes one: the plan from the row's size and the stored
    header, then exactly the planned ciphertext bytes of the stored blob."""
    header = blob[: parse_header(blob).size]
    plan = plan_range(parse_header(header), size, start, end)
    piece = blob[plan.ciphertext_start : plan.ciphertext_end + 1]
    return asyncio.run(_collect(decrypt_range(key, CONTEXT, header, _agen([piece]), plan)))


def _assert_silent(error: IntegrityError, *secrets: bytes) -> None:
    """The one error with its one message (no oracle): no key, nonce or plaintext bytes."""
    assert error.args == (IntegrityError().args[0],)
    text = repr(error) + str(error.__cause__ or "") + str(error.__context__ or "")
    for secret in secrets:
        assert secret.hex() not in text and repr(secret) not in text


def _tampered(blob: bytes, how: str) -> bytes:
    header, units = _split(blob)
    return {
        "cut-at-boundary": header + b"".join(units[:3]),
        "cut-inside-last": blob[:-3],
        "header-only": header,
        "header-cut": header[:-1],
        "zero-bytes": b"",
        "middle-dropped": header + units[0] + units[2] + units[3],
        "two-swapped": header + units[1] + units[0] + units[2] + units[3],
        "one-duplicated": header + units[0] + units[0] + units[1] + units[2] + units[3],
        "last-duplicated": blob + units[3],
        "junk-appended": blob + bytes(GCM_TAG_SIZE + 1),
    }[how]


HOW = [
    "cut-at-boundary",
    "cut-inside-last",
    "header-only",
    "header-cut",
    "zero-bytes",
    "middle-dropped",
    "two-swapped",
    "one-duplicated",
    "last-duplicated",
    "junk-appended",
]


@pytest.mark.parametrize("how", HOW)
def test_a_whole_read_of_a_cut_reordered_or_lengthened_stream_fails_silently(how: str) -> None:
    key = generate_key()
    blob = _tampered(_encrypt(key), how)
    with pytest.raises(IntegrityError) as caught:
        _decrypt(key, blob)
    _assert_silent(caught.value, key.reveal(), DATA)


@pytest.mark.parametrize("how", HOW)
def test_a_range_read_gives_exactly_the_bytes_or_fails(how: str) -> None:
    """Planned from the row's size: a range before the damage is exact (the format
    cannot see a cut after it, FORMAT.md "Range reads"); a range reaching the damaged
    segments fails; none gives other or shorter bytes."""
    key = generate_key()
    blob = _tampered(_encrypt(key), how)
    for start, end in [(0, 3), (SEG, 2 * SEG + 2), (len(DATA) - 3, len(DATA) - 1)]:
        try:
            got = _ranged(key, blob, start, end)
        except IntegrityError as error:
            _assert_silent(error, key.reveal(), DATA)
            continue
        assert got == DATA[start : end + 1], (how, start, end)


def test_a_range_spanning_a_dropped_middle_segment_fails() -> None:
    key = generate_key()
    blob = _tampered(_encrypt(key), "middle-dropped")
    assert _ranged(key, blob, 0, SEG - 1) == DATA[:SEG]  # before the damage: exact
    with pytest.raises(IntegrityError):
        _ranged(key, blob, 0, len(DATA) - 1)


def _with_header_field(blob: bytes, field: str, value: int) -> bytes:
    raw = bytearray(blob)
    at = 2 + raw[1]
    if field == "version":
        raw[0] = value
    elif field == "key-id-length":
        raw[1] = value
    elif field == "segment-size":
        raw[at : at + 4] = struct.pack(">I", value)
    elif field == "salt":
        raw[at + 4] ^= value
    elif field == "nonce-prefix":
        raw[at + 4 + 32] ^= value
    elif field == "commitment":
        raw[at + 4 + 32 + 7] ^= value
    elif field == "key-id":
        raw[2] ^= value
    return bytes(raw)


HEADER_LIES = [
    ("version", STREAM_V1),
    ("version", STREAM_V2),
    ("version", 0xC4),
    ("version", 0x00),
    ("key-id-length", 0),
    ("key-id-length", 255),
    ("key-id", 0x01),
    ("segment-size", 0),
    ("segment-size", MIN_SEGMENT_SIZE - 1),
    ("segment-size", MIN_SEGMENT_SIZE * 2),
    ("segment-size", MAX_SEGMENT_SIZE),
    ("segment-size", MAX_SEGMENT_SIZE + 1),
    ("segment-size", 2**32 - 1),
    ("salt", 0x80),
    ("nonce-prefix", 0x01),
    ("commitment", 0x01),
]


@pytest.mark.parametrize(("field", "value"), HEADER_LIES, ids=lambda v: str(v))
def test_a_lying_header_fails_whole_and_ranged_before_any_plaintext(field: str, value: int) -> None:
    """Every header field changed in storage: the whole read and every range read fail
    with the silent IntegrityError, and the plan a lie allows stays inside the object
    as the row's size bounds it (no read past header + size + one tag per segment)."""
    key = generate_key()
    blob = _with_header_field(_encrypt(key), field, value)
    with pytest.raises(IntegrityError) as caught:
        _decrypt(key, blob)
    _assert_silent(caught.value, key.reveal(), DATA)
    try:
        header = parse_header(blob[: FIXED_HEADER_SIZE + len(CONTEXT.key_id)])
    except IntegrityError:
        return  # refused at parsing: nothing planned, nothing read
    plan = plan_range(header, len(DATA), 0, len(DATA) - 1)
    assert plan.ciphertext_end < header.size + len(DATA) + plan.segment_count * GCM_TAG_SIZE
    with pytest.raises(IntegrityError):
        _ranged(key, blob, 0, len(DATA) - 1)


def test_a_header_whose_segment_size_cannot_hold_the_rows_size_is_an_integrity_error() -> None:
    """The vault plans a whole download from the stored header and the row's size
    (vault/services/artefacts.py _decrypted). A header rewritten in storage to 16-byte
    segments, for an artefact above 2**32 * 16 B = 64 GiB (DATAVAULT_MAX_ARTEFACT_BYTES
    has no upper bound), makes plan_range raise ValueError ("plaintext length exceeds
    the format's maximum"): the middleware's internal 500 (logged as unhandled_error,
    "a bug" to the operator's runbook) instead of the integrity problem, and no
    integrity alert, from bytes an attacker with only storage access controls."""
    key = generate_key()
    blob = _with_header_field(_encrypt(key), "segment-size", MIN_SEGMENT_SIZE)
    header = parse_header(blob)
    with pytest.raises(IntegrityError):
        plan_range(header, MAX_SEGMENTS * MIN_SEGMENT_SIZE + 1, 0, 0)


def test_a_range_opener_refuses_a_plan_for_another_header() -> None:
    key = generate_key()
    blob = _encrypt(key)
    plan = plan_range(parse_header(blob), len(DATA), 0, 0)
    lied = _with_header_field(blob, "segment-size", SEG * 2)
    with pytest.raises(ValueError, match="another header"):
        RangeOpener(key, CONTEXT, lied[: parse_header(lied).size], plan)


def test_two_sealers_under_one_data_key_never_share_a_nonce() -> None:
    """An upload retried under the same data key (were a caller to reuse one): a fresh
    salt makes fresh segment keys, and the nonce prefix differs too."""
    key = generate_key()
    headers = {StreamSealer(key, CONTEXT, SEG).header for _ in range(64)}
    parsed = [parse_header(header) for header in headers]
    assert len(headers) == 64
    assert len({header.salt for header in parsed}) == 64
    assert len({header.nonce_prefix for header in parsed}) == 64


def test_a_sealer_refuses_a_segment_after_the_last_or_a_second_last() -> None:
    """No caller can seal a second message under one (segment key, index) after a crash
    mid-upload resumes on the same sealer: the index only moves forward."""
    sealer = StreamSealer(generate_key(), CONTEXT, SEG)
    sealer.seal(bytes(SEG), last=False)
    sealer.seal(b"x", last=True)
    with pytest.raises(ValueError, match="last segment"):
        sealer.seal(b"y", last=True)


def test_a_record_rewritten_under_one_key_and_context_never_repeats_salt_or_nonce() -> None:
    key = generate_key()
    sealed = [seal_record(key, b'{"a":1}', CONTEXT) for _ in range(64)]
    assert len({blob[1:33] for blob in sealed}) == 64  # salt
    assert len({blob[65:77] for blob in sealed}) == 64  # nonce
    assert all(open_record(key, blob, CONTEXT) == b'{"a":1}' for blob in sealed)


KEK_CONTEXT = KeyContext("subject-key", "tenant-a", "subject-1", "recordings", 1, "sk-1", 3)
WRAP_MOVES = [
    {"subject_id": "subject-2"},
    {"tenant_id": "tenant-b"},
    {"version": 2},  # a KEK version rolled back
    {"version": 4},
    {"generation": 0},
    {"category": "billing"},
    {"key_id": "sk-2"},
    {"purpose": "data-key"},
]


@pytest.mark.parametrize("move", WRAP_MOVES, ids=lambda m: next(iter(m)))
def test_a_wrapped_key_moved_or_rolled_back_fails_silently(move: dict[str, object]) -> None:
    kek, secret = generate_key(), generate_key()
    wrapped = wrap_key(kek, secret, KEK_CONTEXT)
    with pytest.raises(IntegrityError) as caught:
        unwrap_key(kek, wrapped, dataclasses.replace(KEK_CONTEXT, **move))  # type: ignore[arg-type]
    _assert_silent(caught.value, kek.reveal(), secret.reveal(), wrapped[33:45])


def test_every_flipped_byte_of_a_wrapped_key_and_a_rewrap_fail_silently() -> None:
    kek, new_kek, secret = generate_key(), generate_key(), generate_key()
    wrapped = wrap_key(kek, secret, KEK_CONTEXT)
    for at in range(len(wrapped)):
        flipped = bytearray(wrapped)
        flipped[at] ^= 0x40
        with pytest.raises(IntegrityError) as unwrapped:
            unwrap_key(kek, bytes(flipped), KEK_CONTEXT)
        with pytest.raises(IntegrityError) as rewrapped:
            rewrap_key(kek, new_kek, bytes(flipped), KEK_CONTEXT)
        for caught in (unwrapped, rewrapped):
            _assert_silent(caught.value, kek.reveal(), secret.reveal())


def test_a_wrap_under_a_rotated_away_kek_does_not_open_under_the_new_one() -> None:
    old, new, secret = generate_key(), generate_key(), generate_key()
    wrapped = wrap_key(old, secret, KEK_CONTEXT)
    rewrapped = rewrap_key(old, new, wrapped, KEK_CONTEXT)
    assert unwrap_key(new, rewrapped, KEK_CONTEXT).reveal() == secret.reveal()
    with pytest.raises(IntegrityError):
        unwrap_key(new, wrapped, KEK_CONTEXT)  # the old bytes put back after rotation


def test_secret_bytes_never_show_their_bytes() -> None:
    key = generate_key()
    assert key.reveal().hex() not in repr(key) + str(key)
    assert repr(key.reveal()) not in repr(key) + str(key)


def test_a_header_with_a_rewritten_segment_size_fails_before_any_segment_is_read() -> None:
    """Finding 4: a seek of bytes 0-99 of a 20 MiB artefact whose stored header says
    64 MiB segments is planned as one 20 MiB segment. Under C2, whose commitment covers
    the data key and salt only, the opener accepted that header and the vault read the
    segment whole and ran AES-GCM over it (~0.2 s per 64 MiB measured here) before the
    tag failed: a 64x amplification of every seek, from one rewritten header (the vault
    mitigated it by checking the row's segment_size in plan_range, test below). C3's
    commitment covers every header field before it, so the opener refuses the header
    when it is made, before a byte of any segment is read; the crypto layer alone.
    tests/crypto/test_crypto_stream_header_commitment.py has every other field."""
    key = generate_key()
    blob = _with_header_field(_encrypt(key), "segment-size", MAX_SEGMENT_SIZE)
    header_bytes = blob[: parse_header(blob).size]
    size = 20 * 1024 * 1024
    plan = plan_range(parse_header(header_bytes), size, 0, 99)
    assert plan.ciphertext_end - plan.ciphertext_start + 1 == size + GCM_TAG_SIZE
    with pytest.raises(IntegrityError):
        RangeOpener(key, CONTEXT, header_bytes, plan)


@pytest.mark.parametrize("stored", [SEG * 2, 1024 * 1024, MAX_SEGMENT_SIZE])
def test_a_header_whose_segment_size_differs_from_the_rows_is_refused_before_any_read(
    stored: int,
) -> None:
    """Finding 4's mitigation: the vault passes the segment size its row records
    (artefacts.segment_size, written with the blob) to plan_range, which refuses a header
    that disagrees as an IntegrityError before a byte of any segment is read, so a
    rewritten size costs no 64 MiB read and no opening on the event loop."""
    key = generate_key()
    blob = _with_header_field(_encrypt(key), "segment-size", stored)
    header = parse_header(blob)
    with pytest.raises(IntegrityError):
        plan_range(header, 20 * 1024 * 1024, 0, 99, segment_size=SEG)
    honest = parse_header(_encrypt(key))
    plan = plan_range(honest, len(DATA), 0, 0, segment_size=SEG)
    assert plan.segment_size == SEG
