"""Reading the access log: the compliance search and the chain verification."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from vault.blobs.base import BlobStore
from vault.db.database import DEPLOYMENT_TENANT, Database
from vault.db.sql import Queries
from vault.domain.access_chain import GENESIS, ChainedFields, row_hash
from vault.domain.client_ip import IPNetwork
from vault.services.access_anchor import (
    MAX_ANCHOR_AGE_SECONDS,
    Anchor,
    AnchorKeys,
    all_chains,
    walk_history,
)
from vault.services.deployment_secrets import ACCESS_LOG_ANCHOR_SIGNING_KEY as ANCHOR_SIGNING_KEY
from vault.services.tenants import list_tenants

Q = Queries("access_log")
D = Queries("deployment")

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
    first_bad_seq: int | None = None  # None when the problem is in the anchors
    problem: str | None = None
    anchors: int = 0  # anchors in the history that verify
    newest_anchor_at: datetime | None = None
    notes: tuple[str, ...] = ()  # what an auditor should see but is not a failure


@dataclass(frozen=True)
class AnchoredHead:
    row_hash: bytes
    anchor_seq: int  # the first anchor that anchored this row
    anchored_at: datetime


async def verify_chain(
    db: Database, tenant_id: uuid.UUID, anchored: Mapping[int, AnchoredHead] | None = None
) -> ChainReport:
    """Walk the chain from the start; report the first row that is changed (its hash does
    not match), missing (a gap in seq or a prev_hash that does not link) or out of order,
    and a chain that no longer holds a head anchored in the blob store."""
    anchored = anchored or {}
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
                pinned = anchored.get(row["seq"])
                if pinned is not None and bytes(row["row_hash"]) != pinned.row_hash:
                    return ChainReport(
                        tenant_id, checked, False, expected_seq,
                        f"row differs from the head anchored by anchor {pinned.anchor_seq} "
                        "in the blob store (rewritten)",
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
    last = max(anchored, default=0)
    if last > checked:
        pinned = anchored[last]
        return ChainReport(
            tenant_id, checked, False, checked + 1,
            f"chain ends at {checked}, but row {last} was anchored at "
            f"{pinned.anchored_at.isoformat()} by anchor {pinned.anchor_seq} (cut off)",
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
    db: Database,
    blobs: BlobStore,
    anchor_keys: AnchorKeys,
    tenant_id: uuid.UUID | None = None,
    *,
    now: datetime | None = None,
    max_anchor_age: float = MAX_ANCHOR_AGE_SECONDS,
) -> list[ChainReport]:
    """Verify one tenant's chain, or every chain (the deployment-wide one first), each
    against its anchor history in the blob store: the history holds together, the chain
    holds every head anchored in it, and its newest anchor is at most `max_anchor_age`
    seconds older than `now` (a stopped deployment: pass how long it has been stopped)."""
    now = now or datetime.now(UTC)
    max_age = timedelta(seconds=max_anchor_age)
    tenants = await list_tenants(db)
    born: dict[uuid.UUID, datetime | None] = {t.id: t.created_at for t in tenants}
    born[DEPLOYMENT_TENANT] = await _anchor_key_created(db)
    chains = [tenant_id] if tenant_id is not None else all_chains([t.id for t in tenants])
    reports = []
    for chain in chains:
        history = await read_history(blobs, anchor_keys, chain, max_age)
        report = await verify_chain(db, chain, history.heads if history.problem is None else None)
        reports.append(_judge(report, history, now, max_age, born.get(chain)))
    return reports


def _judge(
    report: ChainReport,
    history: AnchorHistory,
    now: datetime,
    max_age: timedelta,
    born: datetime | None,
) -> ChainReport:
    """The chain's report with what the history says: its own problem comes first (the
    evidence is damaged), then the chain's, then freshness."""
    newest = history.newest
    problem = history.problem
    if problem is None and report.ok:
        problem = _staleness(newest, now, max_age, born)
    return replace(
        report,
        ok=report.ok and problem is None,
        first_bad_seq=None if history.problem is not None else report.first_bad_seq,
        problem=history.problem or report.problem or problem,
        anchors=history.count,
        newest_anchor_at=newest.anchored_at if newest is not None else None,
        notes=tuple(history.notes),
    )


def _staleness(
    newest: Anchor | None, now: datetime, max_age: timedelta, born: datetime | None
) -> str | None:
    bound = f"the bound is {max_age.total_seconds():g} s (--max-anchor-age)"
    if newest is None:
        if born is not None and now - born <= max_age:
            return None  # created since the last round: not anchored yet
        return (
            f"no anchor in the blob store for this chain: anchors were removed, or "
            f"anchoring never ran; {bound}"
        )
    age = now - newest.anchored_at
    if age <= max_age:
        return None
    return (
        f"the newest anchor, {newest.anchor_seq}, was written "
        f"{newest.anchored_at.isoformat()}, {age.total_seconds():.0f} s ago, and {bound}: "
        "anchoring stopped, or newer anchors were removed (stale)"
    )


async def _anchor_key_created(db: Database) -> datetime | None:
    """When the deployment began anchoring: the creation of its anchor signing key."""
    async with db.untenanted_tx() as conn:
        created: datetime | None = await conn.fetchval(D.secret_created_at, ANCHOR_SIGNING_KEY)
    return created


@dataclass
class AnchorHistory:
    """What the anchor history of one chain says, as `read_history` found it."""

    heads: dict[int, AnchoredHead] = field(default_factory=dict)  # since the last re-anchoring
    newest: Anchor | None = None
    count: int = 0
    problem: str | None = None  # the first one since the last re-anchoring
    notes: list[str] = field(default_factory=list)


_MAX_PAUSE_NOTES = 5


async def read_history(
    blobs: BlobStore, keys: AnchorKeys, tenant_id: uuid.UUID, max_age: timedelta
) -> AnchorHistory:
    """Walk the chain's anchor history; collect the anchored heads and the problems.

    A re-anchoring (`datavault audit reanchor`, after an incident was recorded) starts
    afresh: what was wrong before it is reported as a note, and heads anchored before it
    need not be in the chain any more. Pauses longer than `max_age` between two anchors
    are notes: the vault was stopped then, or anchors were removed before it restarted."""
    history = AnchorHistory()
    problems: list[str] = []
    pauses: list[str] = []
    previous: Anchor | None = None
    async for entry in walk_history(blobs, keys, tenant_id):
        stored = entry.stored
        if stored is not None and stored.anchor.reanchored:
            note = (
                f"re-anchored by the operator at {stored.anchor.anchored_at.isoformat()} "
                f"(anchor {entry.anchor_seq}) at row {stored.anchor.seq}"
            )
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                note += f", acknowledging: {problems[0]}{more}"
            history.notes.append(note)
            problems.clear()
            history.heads.clear()
        if entry.note:
            history.notes.append(entry.note)
        if entry.problem:
            problems.append(entry.problem)
        if stored is None:
            continue
        anchor = stored.anchor
        history.count += 1
        # (A re-anchoring starts from the chain as it is; a note marks anchor 0
        # rewritten by an earlier version after anchor 1: neither follows on in order.)
        if previous is not None and not anchor.reanchored and entry.note is None:
            if anchor.seq < previous.seq:
                problems.append(
                    f"anchor {anchor.anchor_seq} anchors row {anchor.seq}, before row "
                    f"{previous.seq} of the anchor before it"
                )
            if anchor.anchored_at - previous.anchored_at > max_age:
                pauses.append(
                    f"anchoring paused from {previous.anchored_at.isoformat()} to "
                    f"{anchor.anchored_at.isoformat()} (anchor {anchor.anchor_seq})"
                )
        if anchor.seq > 0:
            pinned = history.heads.get(anchor.seq)
            if pinned is None:
                history.heads[anchor.seq] = AnchoredHead(
                    anchor.row_hash, anchor.anchor_seq, anchor.anchored_at
                )
            elif pinned.row_hash != anchor.row_hash:
                problems.append(
                    f"anchors {pinned.anchor_seq} and {anchor.anchor_seq} anchor different "
                    f"rows {anchor.seq}"
                )
        history.newest, previous = anchor, anchor
    if pauses:
        history.notes.extend(pauses[:_MAX_PAUSE_NOTES])
        if len(pauses) > _MAX_PAUSE_NOTES:
            history.notes.append(f"and {len(pauses) - _MAX_PAUSE_NOTES} more pauses")
    history.problem = problems[0] if problems else None
    return history


# --- the console's record of the last verification --------------------------------------

C = Queries("console")


async def last_chain_check(db: Database, tenant_id: uuid.UUID) -> dict[str, Any] | None:
    """The tenant's last verification from the console: when, by which key, its result."""
    async with db.tenant_tx(tenant_id) as conn:
        row = await conn.fetchrow(C.last_chain_check, tenant_id)
    return dict(row) if row is not None else None


async def verify_and_record_chain(
    db: Database, blobs: BlobStore, anchor_keys: AnchorKeys, tenant_id: uuid.UUID,
    checked_at: datetime, checked_by: uuid.UUID,
) -> ChainReport:  # fmt: skip
    """Verify the tenant's chain against its anchors and keep the result as its last
    verification (what the console shows beside the search)."""
    (report,) = await verify_chains(db, blobs, anchor_keys, tenant_id)
    async with db.tenant_tx(tenant_id) as conn:
        await conn.execute(
            C.save_chain_check, tenant_id, checked_at, checked_by, report.rows, report.ok,
            report.first_bad_seq, report.problem,
        )  # fmt: skip
    return report
