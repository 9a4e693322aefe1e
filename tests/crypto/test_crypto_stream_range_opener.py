"""RangeOpener: a range's segments opened one by one where they are read (an S3 read's
own thread), with the checks decrypt_range makes: exactly the planned segments, each
the length and the authentic segment it must be, and the range trimmed out of them."""

from __future__ import annotations

import os

import pytest

from crypto.errors import IntegrityError
from crypto.secrets import generate_key
from crypto.stream import RangeOpener, parse_header, plan_range
from tests.crypto.test_crypto_stream import CONTEXT, encrypt

SEGMENT = 4096
TAG = 16


def _sealed(size: int) -> tuple[bytes, bytes, bytes, int]:
    """(plaintext, stream, header bytes, header size) of a fresh stream."""
    data = os.urandom(size)
    key = generate_key()
    stream = encrypt(key, data, SEGMENT)
    header = parse_header(stream)
    return data, stream, stream[: header.size], header.size


def _units(stream: bytes, start: int, end: int) -> list[bytes]:
    """The ciphertext of bytes start..end, one segment's ciphertext per unit."""
    body = stream[start : end + 1]
    return [body[i : i + SEGMENT + TAG] for i in range(0, len(body), SEGMENT + TAG)]


def test_the_planned_segments_opened_one_by_one_give_exactly_the_range() -> None:
    key = generate_key()
    data = os.urandom(5 * SEGMENT + 77)
    stream = encrypt(key, data, SEGMENT)
    header = parse_header(stream)
    first, last = SEGMENT + 10, 4 * SEGMENT + 20  # cut out of segments 1 and 4
    plan = plan_range(header, len(data), first, last)
    opener = RangeOpener(key, CONTEXT, stream[: header.size], plan)
    units = _units(stream, plan.ciphertext_start, plan.ciphertext_end)
    assert len(units) == 4
    plaintext = b"".join(opener.open_next(unit) for unit in units)
    opener.finish()
    assert plaintext == data[first : last + 1]


def test_a_range_ending_in_the_short_last_segment_opens_it_as_the_last() -> None:
    key = generate_key()
    data = os.urandom(3 * SEGMENT + 5)
    stream = encrypt(key, data, SEGMENT)
    header = parse_header(stream)
    plan = plan_range(header, len(data), 2 * SEGMENT, len(data) - 1)
    opener = RangeOpener(key, CONTEXT, stream[: header.size], plan)
    units = _units(stream, plan.ciphertext_start, plan.ciphertext_end)
    assert b"".join(opener.open_next(unit) for unit in units) == data[2 * SEGMENT :]
    opener.finish()


def _opener_and_units() -> tuple[RangeOpener, list[bytes]]:
    key = generate_key()
    data = os.urandom(4 * SEGMENT)
    stream = encrypt(key, data, SEGMENT)
    header = parse_header(stream)
    plan = plan_range(header, len(data), SEGMENT, 3 * SEGMENT - 1)  # segments 1 and 2
    units = _units(stream, plan.ciphertext_start, plan.ciphertext_end)
    return RangeOpener(key, CONTEXT, stream[: header.size], plan), units


def test_a_flipped_byte_is_an_integrity_error() -> None:
    opener, units = _opener_and_units()
    opener.open_next(units[0])
    flipped = bytearray(units[1])
    flipped[100] ^= 1
    with pytest.raises(IntegrityError):
        opener.open_next(bytes(flipped))


@pytest.mark.parametrize("wrong", ["short unit", "swapped order", "one too many", "one missing"])
def test_anything_but_the_planned_segments_is_an_integrity_error(wrong: str) -> None:
    opener, units = _opener_and_units()
    with pytest.raises(IntegrityError):
        if wrong == "short unit":
            opener.open_next(units[0][:-1])
        elif wrong == "swapped order":
            opener.open_next(units[1])
        elif wrong == "one too many":
            for unit in [*units, units[-1]]:
                opener.open_next(unit)
        else:
            opener.open_next(units[0])
            opener.finish()


def test_a_header_under_another_key_fails_before_any_segment() -> None:
    _, stream, header_bytes, _ = _sealed(2 * SEGMENT)
    plan = plan_range(parse_header(stream), 2 * SEGMENT, 0, SEGMENT)
    with pytest.raises(IntegrityError):
        RangeOpener(generate_key(), CONTEXT, header_bytes, plan)
