"""Walking an anchor history (vault/services/access_anchor.py::walk_history) on a
filesystem store: what counts as a gap, a broken link, and what is only pruning."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crypto.secrets import generate_key
from vault.blobs.base import BlobNotFound
from vault.blobs.filesystem import FilesystemBlobStore
from vault.services.access_anchor import (
    Anchor,
    AnchorKeys,
    HistoryEntry,
    encode_anchor,
    history_key,
    walk_history,
)

KEYS = AnchorKeys(generate_key(), generate_key())
CHAIN = uuid.UUID("00000000-0000-4000-8000-000000000002")
AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def _write_history(store: FilesystemBlobStore, count: int) -> None:
    link: tuple[int, bytes] | None = None
    for n in range(1, count + 1):
        anchor = Anchor(
            CHAIN, n, bytes(32), AT + timedelta(seconds=30 * n), n,
            link[0] if link else None, link[1] if link else None, disclosures=(0, bytes(32)),
        )  # fmt: skip
        data = encode_anchor(anchor, KEYS)
        await store.put(history_key(CHAIN, n), data)
        link = (n, hashlib.sha256(data).digest())


def _walk(store: FilesystemBlobStore) -> list[HistoryEntry]:
    async def run() -> list[HistoryEntry]:
        return [entry async for entry in walk_history(store, KEYS, CHAIN)]

    return asyncio.run(run())


def _problems(entries: list[HistoryEntry]) -> list[str]:
    return [entry.problem for entry in entries if entry.problem]


def test_an_intact_history_walks_in_order(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    asyncio.run(_write_history(store, 5))
    entries = _walk(store)
    assert [e.anchor_seq for e in entries] == [1, 2, 3, 4, 5]
    assert _problems(entries) == []


def test_pruned_anchors_at_the_start_are_no_gap(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    asyncio.run(_write_history(store, 5))
    for n in (1, 2):
        (tmp_path / history_key(CHAIN, n)).unlink()
    assert _problems(_walk(store)) == []


def test_an_anchor_pruned_while_verify_walks_is_no_gap(tmp_path: Path) -> None:
    """Listed, then gone before it was read: the pruning job at the start of the
    history, not tampering."""

    class PrunedMeanwhile(FilesystemBlobStore):
        async def get(self, key: str) -> bytes:
            if key == history_key(CHAIN, 1):
                raise BlobNotFound("gone")
            return await super().get(key)

    store = PrunedMeanwhile(tmp_path)
    asyncio.run(_write_history(store, 3))
    entries = _walk(store)
    assert [e.anchor_seq for e in entries] == [2, 3] and _problems(entries) == []


def test_a_removed_anchor_in_the_middle_is_a_gap(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    asyncio.run(_write_history(store, 6))
    for n in (3, 4):
        (tmp_path / history_key(CHAIN, n)).unlink()
    assert _problems(_walk(store)) == ["anchors 3 to 4 are missing from the history"]


def test_a_replaced_anchor_breaks_the_next_link(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    asyncio.run(_write_history(store, 4))
    # Anchor 2 as it would be signed again with other content: valid on its own, but
    # anchor 3 names the bytes that were there.
    anchor_1 = (tmp_path / history_key(CHAIN, 1)).read_bytes()
    other = Anchor(
        CHAIN, 1, bytes(32), AT, 2, 1, hashlib.sha256(anchor_1).digest(),
        disclosures=(0, bytes(32)),
    )  # fmt: skip
    (tmp_path / history_key(CHAIN, 2)).write_bytes(encode_anchor(other, KEYS))
    assert _problems(_walk(store)) == [
        "anchor 3 does not link to anchor 2 (one of them was changed or replaced)"
    ]


def test_an_object_that_is_no_anchor_is_named(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    asyncio.run(_write_history(store, 2))
    asyncio.run(store.put(f"audit-heads/{CHAIN}/history/notes.txt", b"x"))
    assert _problems(_walk(store)) == ["an object in the anchor history is not an anchor"]
