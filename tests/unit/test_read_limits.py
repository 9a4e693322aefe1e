"""Limits on the read side (issue 19), each at its edge: the largest piece a blob store
hands out at once, and how many stream headers a process keeps."""

from __future__ import annotations

import pytest

from vault.blobs.base import MAX_PIECE_BYTES, check_piece_bytes
from vault.services.stream_headers import StreamHeaderCache


def test_piece_size_is_bounded_by_the_largest_segment() -> None:
    assert check_piece_bytes(None, 1024) == 1024
    assert check_piece_bytes(1, 1024) == 1
    assert check_piece_bytes(MAX_PIECE_BYTES, 1024) == MAX_PIECE_BYTES
    for refused in (0, -1, MAX_PIECE_BYTES + 1):
        with pytest.raises(ValueError, match="piece_bytes"):
            check_piece_bytes(refused, 1024)


def test_header_cache_keeps_the_most_recently_used_up_to_its_bound() -> None:
    cache = StreamHeaderCache(max_entries=3)
    for n in range(3):
        cache.put(f"k{n}", bytes([n]))
    assert cache.get("k0") == b"\x00"  # used: now the newest
    cache.put("k3", b"\x03")  # at the bound: the least recently used (k1) goes
    assert cache.get("k1") is None
    assert [cache.get(k) for k in ("k0", "k2", "k3")] == [b"\x00", b"\x02", b"\x03"]
    cache.forget("k2")
    assert cache.get("k2") is None
