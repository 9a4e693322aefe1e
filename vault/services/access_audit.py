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
from vault.domain.access_chain import ChainedFields, row_hash
from vault.domain.client_ip import IPNetwork, canonical_network, mapped_spelling
from vault.services.access_anchor import (
    MAX_ANCHOR_AGE_SECONDS,
    Anchor,
    AnchorKeys,
    all_chains,
    walk_history,
)
from vault.services.chain_walk import AnchoredHead, ChainWalk, walk_chain
from vault.services.deployment_secrets import ACCESS_LOG_ANCHOR_SIGNING_KEY as ANCHOR_SIGNING_KEY
from vault.services.disclosures import verify_disclosures
from vault.services.tenants import list_tenants

Q = Queries("access_log")
D = Queries("deployment")

SEARCH_DEFAULT_LIMIT = 50
SEARCH_MAX_LIMIT = 500


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
            # Rows logged before addresses were canonical hold an IPv4 client in its
            # mapped spelling: the filter finds them too.
            str(twin) if query.ip is not None and (twin := mapped_spelling(query.ip)) else None,
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
    # The tenant's disclosure chain (vault/domain/disclosures.py), walked the same way.
    disclosures: int = 0
    first_bad_disclosure: int | None = None


async def verify_chain(
    db: Database, tenant_id: uuid.UUID, anchored: Mapping[int, AnchoredHead] | None = None
) -> ChainReport:
    """The access-log chain of `tenant_id`, walked (`walk_chain`)."""
    walk = await walk_chain(db, tenant_id, Q, _access_row_hash, anchored)
    return ChainReport(tenant_id, walk.rows, walk.problem is None, walk.first_bad_seq, walk.problem)


def _access_row_hash(row: Any, prev: bytes) -> bytes:
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
    return row_hash(prev, fields)


def parse_ip_filter(value: str) -> IPNetwork:
    # Addresses are logged in their canonical form (an IPv4 client as IPv4 however it
    # was reported): a filter written in the mapped spelling finds them.
    return canonical_network(ipaddress.ip_network(value, strict=False))


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
        trusted = history.problem is None
        report = await verify_chain(db, chain, history.heads if trusted else None)
        if chain != DEPLOYMENT_TENANT:
            walk = await verify_disclosures(
                db, chain, history.disclosure_heads if trusted else None
            )
            report = _with_disclosures(report, walk)
        reports.append(_judge(report, history, now, max_age, born.get(chain)))
    return reports


def _with_disclosures(report: ChainReport, walk: ChainWalk) -> ChainReport:
    """The access-log chain's report with the disclosure chain's walk; the access log's
    own problem, if any, is named first."""
    bad = walk.problem is not None
    return replace(
        report,
        ok=report.ok and not bad,
        problem=report.problem or (f"disclosures: {walk.problem}" if bad else None),
        disclosures=walk.rows,
        first_bad_disclosure=walk.first_bad_seq,
    )


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
        first_bad_disclosure=None if history.problem is not None else report.first_bad_disclosure,
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
    # The disclosure chain's heads the anchors carry (v4), likewise.
    disclosure_heads: dict[int, AnchoredHead] = field(default_factory=dict)
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
            history.disclosure_heads.clear()
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
        problems += _pin(history.heads, anchor.seq, anchor.row_hash, anchor, "rows")
        if anchor.disclosures is not None:
            disclosures_seq, disclosures_hash = anchor.disclosures
            problems += _pin(
                history.disclosure_heads, disclosures_seq, disclosures_hash, anchor, "disclosures"
            )
        history.newest, previous = anchor, anchor
    if pauses:
        history.notes.extend(pauses[:_MAX_PAUSE_NOTES])
        if len(pauses) > _MAX_PAUSE_NOTES:
            history.notes.append(f"and {len(pauses) - _MAX_PAUSE_NOTES} more pauses")
    history.problem = problems[0] if problems else None
    return history


def _pin(
    heads: dict[int, AnchoredHead], seq: int, row_hash: bytes, anchor: Anchor, what: str
) -> list[str]:
    """Pin a head an anchor names; the problem when an earlier anchor pinned another
    row under the same seq."""
    if seq == 0:
        return []
    pinned = heads.get(seq)
    if pinned is None:
        heads[seq] = AnchoredHead(row_hash, anchor.anchor_seq, anchor.anchored_at)
        return []
    if pinned.row_hash != row_hash:
        return [
            f"anchors {pinned.anchor_seq} and {anchor.anchor_seq} anchor different {what} {seq}"
        ]
    return []


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
            report.first_bad_seq, report.problem, report.disclosures,
            report.first_bad_disclosure,
        )  # fmt: skip
    return report
