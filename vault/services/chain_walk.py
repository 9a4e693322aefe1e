"""Walking a hash chain kept in PostgreSQL (the access log's, a tenant's disclosures'):
every row's link and hash, gaps, the head, and the heads its anchors pinned."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vault.db.database import Database
from vault.db.sql import Queries
from vault.domain.access_chain import GENESIS

# Rows read per round trip while walking.
_VERIFY_PAGE = 2000

RowHash = Callable[[Any, bytes], bytes]


@dataclass(frozen=True)
class AnchoredHead:
    row_hash: bytes
    anchor_seq: int  # the first anchor that anchored this row
    anchored_at: datetime


@dataclass(frozen=True)
class ChainWalk:
    """What walking one hash chain found: how many rows hold together, and the first
    that does not (its seq and why)."""

    rows: int
    first_bad_seq: int | None = None
    problem: str | None = None


async def walk_chain(
    db: Database,
    tenant_id: uuid.UUID,
    queries: Queries,
    row_hash_of: RowHash,
    anchored: Mapping[int, AnchoredHead] | None = None,
) -> ChainWalk:
    """Walk a chain from the start (`queries`: its `get_head` and `chain_page`); report the
    first row that is changed (its hash does not match `row_hash_of(row, prev_hash)`),
    missing (a gap in seq or a prev_hash that does not link) or out of order, and a chain
    that no longer holds a head anchored in the blob store."""
    anchored = anchored or {}
    expected_seq, prev, checked = 1, GENESIS, 0
    async with db.tenant_tx(tenant_id) as conn:
        head = await conn.fetchrow(queries.get_head, tenant_id)
        after = 0
        while True:
            page = await conn.fetch(queries.chain_page, tenant_id, after, _VERIFY_PAGE)
            for row in page:
                problem = check_row(row, expected_seq, prev, row_hash_of)
                if problem:
                    return ChainWalk(checked, expected_seq, problem)
                pinned = anchored.get(row["seq"])
                if pinned is not None and bytes(row["row_hash"]) != pinned.row_hash:
                    return ChainWalk(
                        checked, expected_seq,
                        f"row differs from the head anchored by anchor {pinned.anchor_seq} "
                        "in the blob store (rewritten)",
                    )  # fmt: skip
                prev, expected_seq, checked = bytes(row["row_hash"]), expected_seq + 1, checked + 1
            if len(page) < _VERIFY_PAGE:
                break
            after = page[-1]["seq"]
    head_seq = head["seq"] if head else 0
    if head_seq != checked or (head is not None and bytes(head["row_hash"]) != prev):
        return ChainWalk(checked, checked + 1, f"chain ends at {checked}, head says {head_seq}")
    last = max(anchored, default=0)
    if last > checked:
        pinned = anchored[last]
        return ChainWalk(
            checked, checked + 1,
            f"chain ends at {checked}, but row {last} was anchored at "
            f"{pinned.anchored_at.isoformat()} by anchor {pinned.anchor_seq} (cut off)",
        )  # fmt: skip
    return ChainWalk(checked)


def check_row(row: Any, expected_seq: int, prev: bytes, row_hash_of: RowHash) -> str | None:
    if row["seq"] != expected_seq:
        return f"row {expected_seq} is missing (next row is {row['seq']})"
    if bytes(row["prev_hash"]) != prev:
        return "row does not link to the row before it (removed or reordered)"
    if row_hash_of(row, prev) != bytes(row["row_hash"]):
        return "row content does not match its hash (changed)"
    return None
