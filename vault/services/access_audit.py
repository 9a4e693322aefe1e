"""Reading the access log: the compliance search and the chain verification."""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vault.blobs.base import BlobStore
from vault.db.database import Database
from vault.db.sql import Queries
from vault.domain.access_chain import GENESIS, ChainedFields, row_hash
from vault.domain.client_ip import IPNetwork
from vault.services.access_anchor import (
    Anchor,
    AnchorInvalid,
    AnchorKeys,
    all_chains,
    read_anchor,
)
from vault.services.tenants import list_tenants

Q = Queries("access_log")

SEARCH_DEFAULT_LIMIT = 50
SEARCH_MAX_LIMIT = 500
_VERIFY_PAGE = 2000


@dataclass(frozen=True)
class AccessQuery:
    api_key_id: uuid.UUID | None = None
    ip: IPNetwork | None = None
    status: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_seq: int | None = None
    subject_ref_hash: bytes | None = None
    limit: int = SEARCH_DEFAULT_LIMIT


async def search(db: Database, tenant_id: uuid.UUID, query: AccessQuery) -> list[dict[str, Any]]:
    async with db.tenant_tx(tenant_id) as conn:
        rows = await conn.fetch(
            Q.search,
            tenant_id,
            query.api_key_id,
            str(query.ip) if query.ip is not None else None,
            query.status,
            query.since,
            query.until,
            query.before_seq,
            query.subject_ref_hash,
            query.limit,
        )
    return [dict(row) for row in rows]


@dataclass(frozen=True)
class ChainReport:
    tenant_id: uuid.UUID
    rows: int
    ok: bool
    first_bad_seq: int | None = None
    problem: str | None = None


async def verify_chain(
    db: Database, tenant_id: uuid.UUID, anchor: Anchor | None = None
) -> ChainReport:
    """Walk the chain from the start; report the first row that is changed (its hash does
    not match), missing (a gap in seq or a prev_hash that does not link) or out of order,
    and a chain that no longer holds the head anchored in the blob store."""
    expected_seq, prev, checked = 1, GENESIS, 0
    async with db.tenant_tx(tenant_id) as conn:
        head = await conn.fetchrow(Q.get_head, tenant_id)
        after = 0
        while True:
            page = await conn.fetch(Q.chain_page, tenant_id, after, _VERIFY_PAGE)
            for row in page:
                problem = _check_row(row, expected_seq, prev)
                if problem:
                    return ChainReport(tenant_id, checked, False, expected_seq, problem)
                if (
                    anchor is not None
                    and row["seq"] == anchor.seq
                    and bytes(row["row_hash"]) != anchor.row_hash
                ):
                    return ChainReport(
                        tenant_id, checked, False, expected_seq,
                        "row differs from the head anchored in the blob store (rewritten)",
                    )  # fmt: skip
                prev, expected_seq, checked = bytes(row["row_hash"]), expected_seq + 1, checked + 1
            if len(page) < _VERIFY_PAGE:
                break
            after = page[-1]["seq"]
    head_seq = head["seq"] if head else 0
    if head_seq != checked or (head is not None and bytes(head["row_hash"]) != prev):
        return ChainReport(
            tenant_id, checked, False, checked + 1, f"chain ends at {checked}, head says {head_seq}"
        )
    if anchor is not None and checked < anchor.seq:
        return ChainReport(
            tenant_id, checked, False, checked + 1,
            f"chain ends at {checked}, but row {anchor.seq} was anchored at "
            f"{anchor.anchored_at.isoformat()} (cut off)",
        )  # fmt: skip
    return ChainReport(tenant_id, checked, True)


def _check_row(row: Any, expected_seq: int, prev: bytes) -> str | None:
    if row["seq"] != expected_seq:
        return f"row {expected_seq} is missing (next row is {row['seq']})"
    if bytes(row["prev_hash"]) != prev:
        return "row does not link to the row before it (removed or reordered)"
    fields = ChainedFields(
        tenant_id=row["tenant_id"],
        seq=row["seq"],
        at=row["at"],
        request_id=row["request_id"],
        api_key_id=row["api_key_id"],
        key_prefix=row["key_prefix"],
        ip_hash=bytes(row["ip_hash"]),
        method=row["method"],
        route=row["route"],
        status=row["status"],
        bytes_in=row["bytes_in"],
        bytes_out=row["bytes_out"],
        subject_ref_hash=(
            bytes(row["subject_ref_hash"]) if row["subject_ref_hash"] is not None else None
        ),
        artefact_id=row["artefact_id"],
    )
    if row_hash(prev, fields) != bytes(row["row_hash"]):
        return "row content does not match its hash (changed)"
    return None


def parse_ip_filter(value: str) -> IPNetwork:
    return ipaddress.ip_network(value, strict=False)


async def verify_chains(
    db: Database, blobs: BlobStore, anchor_keys: AnchorKeys, tenant_id: uuid.UUID | None = None
) -> list[ChainReport]:
    """Verify one tenant's chain, or every chain (the deployment-wide one first), each
    against its anchor in the blob store."""
    if tenant_id is not None:
        chains = [tenant_id]
    else:
        chains = all_chains([t.id for t in await list_tenants(db)])
    reports = []
    for chain in chains:
        try:
            anchor = await read_anchor(blobs, anchor_keys, chain)
        except AnchorInvalid as exc:
            reports.append(ChainReport(chain, 0, False, None, str(exc)))
            continue
        reports.append(await verify_chain(db, chain, anchor))
    return reports
