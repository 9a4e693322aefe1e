"""HTTP Range requests (RFC 9110 §14): one byte range, or none."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SINGLE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")
# No artefact can reach 10**19 bytes (PostgreSQL's bigint, which holds sizes, ends below
# 2**63 < 10**19), so a position of more digits is read as "beyond any size" instead of
# being converted: int() refuses strings of over 4,300 digits with ValueError (a 500), and
# is quadratic below that. A first position beyond the end is unsatisfiable (416), a last
# one is cut to the end, a suffix longer than the object is the whole object (RFC 9110).
MAX_POSITION_DIGITS = 19
BEYOND_ANY_SIZE = 10_000_000_000_000_000_000  # 10**MAX_POSITION_DIGITS


class RangeNotSatisfiable(Exception):
    """A syntactically valid range that selects no byte of the object (416)."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single range asked for, or None for the whole object. Multiple ranges and
    malformed headers are answered with the whole object, as RFC 9110 allows."""
    if header is None:
        return None
    match = _SINGLE.match(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match[1], match[2]
    if first == "" and last == "":
        return None
    if first == "":
        suffix = _position(last)
        if suffix == 0:
            raise RangeNotSatisfiable()
        if size == 0:
            raise RangeNotSatisfiable()
        return ByteRange(max(0, size - suffix), size - 1)
    start = _position(first)
    if last and _position(last) < start:
        return None  # invalid: ignore the header
    if start >= size:
        raise RangeNotSatisfiable()
    end = _position(last) if last else size - 1
    return ByteRange(start, min(end, size - 1))


def _position(digits: str) -> int:
    significant = digits.lstrip("0") or "0"
    if len(significant) > MAX_POSITION_DIGITS:
        return BEYOND_ANY_SIZE
    return int(significant)
