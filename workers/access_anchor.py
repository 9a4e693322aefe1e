"""The anchor publisher: each round, every access-log chain gets the next anchor of its
history in the blob store, a signed copy of its head (a heartbeat when the head has not
moved), and anchors older than their retention are pruned. The format, the reading and
the checks are in vault/services/access_anchor.py.

Cost: one anchor a round (every 30 s) per chain, 2,880 objects (about 1.6 MB) a day for
each tenant and for the deployment-wide chain, each locked for the backup retention and
a day where the bucket has Object Lock, and pruned once that lock has ended (about
104,000 kept per chain at the default 35 days); a round costs each chain one listing
and one write, plus a pointer write every `POINTER_EVERY` anchors. With several vault
processes one anchors at a time (an advisory lock), and a chain whose head has not
moved gets no second anchor within `HEARTBEAT_SECONDS`, so replicas do not multiply
the heartbeats.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from crypto.mac import same_digest
from vault.blobs.base import BlobNotFound, BlobStore
from vault.config import Settings
from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.domain.access_chain import GENESIS
from vault.services.access_anchor import (
    ANCHOR_INTERVAL_SECONDS,
    Anchor,
    AnchorInvalid,
    AnchorKeys,
    StoredAnchor,
    all_chains,
    decode_stored,
    encode_anchor,
    find_newest,
    history_key,
    history_number,
    history_prefix,
    legacy_anchor_key,
    read_pointer,
    write_pointer,
)
from vault.services.tenants import list_tenants

Q = Queries("access_log")
D = Queries("disclosures")
log = structlog.get_logger("datavault.access_anchor")

# A chain whose head has not moved gets its heartbeat when its newest anchor is this old:
# a little under the interval, so one process's rounds each write one, and a second
# process arriving just after another's round writes none.
HEARTBEAT_SECONDS = ANCHOR_INTERVAL_SECONDS - 5.0
# Anchors are locked (Object Lock) for the backup retention and a day, as the shred
# ledger's entries are: as long as a backup from before an incident can be restored, the
# anchors written since show what the restore took away. Settings' default.
DEFAULT_RETAIN_DAYS = Settings().backup_retention_days
# The pointer that tells a starting process where to list from: rewritten every this many
# anchors, so a start lists at most this many keys per chain (one request).
POINTER_EVERY = 20
PRUNE_INTERVAL = timedelta(hours=1)
_PRUNE_BATCH = 500  # anchors looked at per chain per pruning (about 4 hours' worth)
_CHAINS_AT_ONCE = 8  # chains anchored concurrently; each holds a connection briefly
# One publisher at a time across every `serve` and `worker` process.
_ANCHOR_LOCK = 0x6476_616E_6368  # "dvanch"


@dataclass
class AnchorMemory:
    """What one process knows of each chain's history between rounds: its newest
    anchor (so a round lists only what came after it), and when it last pruned."""

    newest: dict[uuid.UUID, StoredAnchor] = field(default_factory=dict)
    pruned_at: dict[uuid.UUID, datetime] = field(default_factory=dict)


async def publish_anchors(
    db: Database,
    blobs: BlobStore,
    keys: AnchorKeys,
    *,
    now: datetime | None = None,
    memory: AnchorMemory | None = None,
    retain_days: int = DEFAULT_RETAIN_DAYS,
    wait: bool = False,
    on_refused: Callable[[str], None] = lambda reason: None,
) -> int:
    """Give every chain the next anchor of its history; return how many were written.

    A history only ever moves forward along the same chain. When the newest anchor does
    not verify, or the chain no longer holds its head (the tail was cut, or the chain
    rewritten and grown past it), nothing is written for that chain: it is logged and
    counted (`on_refused`), its newest anchor grows stale, and `datavault audit verify`
    reports both until an operator has recorded the incident and run `datavault audit
    reanchor` (docs/runbook.md). `wait`: wait for another process's round instead of
    skipping this one (shutdown, the CLI)."""
    now = now or datetime.now(UTC)
    memory = memory if memory is not None else AnchorMemory()
    async with db.advisory_lock(_ANCHOR_LOCK, wait=wait) as held:
        if not held:
            return 0
        chains = all_chains([t.id for t in await list_tenants(db)])
        gate = asyncio.Semaphore(_CHAINS_AT_ONCE)

        async def one(chain: uuid.UUID) -> int:
            async with gate:
                written = await _anchor_chain(db, blobs, keys, chain, now, memory, retain_days)
                if isinstance(written, str):  # refused: the evidence stays as it is
                    log.error("access_log_anchor_kept", chain=str(chain), reason=written)
                    on_refused(written)
                    return 0
                last_pruned = memory.pruned_at.get(chain)
                known = memory.newest.get(chain)
                if known is not None and (
                    last_pruned is None or now - last_pruned >= PRUNE_INTERVAL
                ):
                    await prune_anchors(
                        blobs, keys, chain, known.anchor.anchor_seq, now, retain_days
                    )
                    memory.pruned_at[chain] = now
                return written

        # Every chain's task ends before the lock is released, failed ones too; then the
        # round fails as a whole (the job counts it) if any chain failed.
        outcomes = await asyncio.gather(*(one(chain) for chain in chains), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return sum(o for o in outcomes if isinstance(o, int))


async def _anchor_chain(
    db: Database,
    blobs: BlobStore,
    keys: AnchorKeys,
    chain: uuid.UUID,
    now: datetime,
    memory: AnchorMemory,
    retain_days: int,
) -> int | str:
    """1 when an anchor was written, 0 when none was due, the reason when refused."""
    try:
        newest = await _newest(blobs, keys, chain, memory.newest.get(chain))
    except AnchorInvalid:
        return "anchor_invalid"
    async with db.tenant_tx(chain) as conn:
        head_seq, head_hash = await _head(conn, Q, chain)
        disclosures = await _head(conn, D, chain)
        if newest is not None:
            anchored = newest.anchor
            if not await _holds(
                conn, Q, chain, (head_seq, head_hash), (anchored.seq, anchored.row_hash)
            ):
                return "chain_contradicts_anchor"
            if anchored.disclosures is not None and not await _holds(
                conn, D, chain, disclosures, anchored.disclosures
            ):
                return "disclosures_contradict_anchor"
    if newest is not None:
        memory.newest[chain] = newest
        unmoved = (newest.anchor.seq, newest.anchor.row_hash) == (head_seq, head_hash) and (
            newest.anchor.disclosures == disclosures
        )
        if unmoved and now - newest.anchor.anchored_at < timedelta(seconds=HEARTBEAT_SECONDS):
            return 0
    await write_anchor(
        blobs, keys, chain, head_seq, head_hash, now, newest, memory, retain_days,
        disclosures=disclosures,
    )  # fmt: skip
    return 1


async def _head(conn: Connection, queries: Queries, chain: uuid.UUID) -> tuple[int, bytes]:
    """A chain's head (seq, row_hash): the access log's (Q) or the disclosures' (D)."""
    head = await conn.fetchrow(queries.get_head, chain)
    return (head["seq"], bytes(head["row_hash"])) if head else (0, GENESIS)


async def _holds(
    conn: Connection,
    queries: Queries,
    chain: uuid.UUID,
    head: tuple[int, bytes],
    anchored: tuple[int, bytes],
) -> bool:
    """Whether the chain (at `head`) still holds the anchored row with the anchored hash."""
    seq, row_hash = anchored
    if seq == 0:
        return True
    at_anchor = await conn.fetchval(queries.row_hash_at, chain, seq)
    return head[0] >= seq and at_anchor is not None and same_digest(bytes(at_anchor), row_hash)


async def _newest(
    blobs: BlobStore, keys: AnchorKeys, chain: uuid.UUID, known: StoredAnchor | None
) -> StoredAnchor | None:
    """The chain's newest anchor, verified. From what this process knows, a round costs
    one listing (did another process write since?); a process that has just started
    lists from where the pointer says."""
    if known is not None:
        after = history_key(chain, known.anchor.anchor_seq)
        later = await blobs.list_keys(history_prefix(chain), start_after=after)
        numbers = [n for n in (history_number(chain, k) for k in later) if n is not None]
        if not numbers:
            # If this anchor was removed since, the next one still links to it: the
            # gap shows in `datavault audit verify`.
            return known
        start = max(numbers)
    else:
        start = await read_pointer(blobs, chain)
    found = await find_newest(blobs, chain, start)
    if found is None:
        return None
    number, data = found
    return decode_stored(data, keys, chain, number)


async def write_anchor(
    blobs: BlobStore,
    keys: AnchorKeys,
    chain: uuid.UUID,
    seq: int,
    row_hash: bytes,
    now: datetime,
    previous: StoredAnchor | tuple[int, bytes] | None,
    memory: AnchorMemory,
    retain_days: int,
    *,
    disclosures: tuple[int, bytes],
    reanchored: bool = False,
) -> StoredAnchor:
    """Write the anchor after `previous` (an anchor, or the number and SHA-256 of an
    object that does not verify, which a re-anchoring links to all the same), with the
    head of the access-log chain (`seq`, `row_hash`) and of the disclosure chain."""
    if isinstance(previous, StoredAnchor):
        link: tuple[int, bytes] | None = (previous.anchor.anchor_seq, previous.sha256)
    else:
        link = previous
    number = link[0] + 1 if link is not None else 1
    anchor = Anchor(
        chain, seq, row_hash, now, number,
        link[0] if link else None, link[1] if link else None, reanchored, disclosures,
    )  # fmt: skip
    data = encode_anchor(anchor, keys)
    until = now + timedelta(days=retain_days + 1)
    await blobs.put_retained(history_key(chain, number), data, until)
    stored = StoredAnchor(anchor, hashlib.sha256(data).digest())
    memory.newest[chain] = stored
    if number % POINTER_EVERY == 0:
        await write_pointer(blobs, chain, number)
    return stored


async def prune_anchors(
    blobs: BlobStore,
    keys: AnchorKeys,
    chain: uuid.UUID,
    newest: int,
    now: datetime,
    retain_days: int,
) -> int:
    """Delete the chain's anchors whose lock has ended (written more than the retention
    and a day ago), oldest first, older than anchor `newest` only; return how many.
    Anchor 0 (v1/v2) goes first, or the history would have a gap. An anchor that does
    not verify stops the pruning: it is evidence. (Under Object Lock a deletion leaves
    the version, now unlocked, as a noncurrent one: the bucket's lifecycle rule for
    noncurrent versions removes it, deploy/README.md.)"""
    if newest < 1:
        return 0
    cutoff = now - timedelta(days=retain_days + 1)
    pruned = 0
    try:
        legacy = await blobs.get(legacy_anchor_key(chain))
    except BlobNotFound:
        legacy = None
    if legacy is not None:
        if not _expired(legacy, keys, chain, 0, cutoff):
            return 0
        await blobs.delete(legacy_anchor_key(chain))
        pruned += 1
    for key in await blobs.list_keys(history_prefix(chain), limit=_PRUNE_BATCH):
        number = history_number(chain, key)
        if number is None or number >= newest:
            break
        try:
            data = await blobs.get(key)
        except BlobNotFound:
            continue
        if not _expired(data, keys, chain, number, cutoff):
            break
        await blobs.delete(key)
        pruned += 1
    return pruned


def _expired(
    data: bytes, keys: AnchorKeys, chain: uuid.UUID, number: int, cutoff: datetime
) -> bool:
    try:
        return decode_stored(data, keys, chain, number).anchor.anchored_at < cutoff
    except AnchorInvalid:
        return False


async def reanchor(
    db: Database,
    blobs: BlobStore,
    keys: AnchorKeys,
    chain: uuid.UUID,
    *,
    now: datetime | None = None,
    retain_days: int = DEFAULT_RETAIN_DAYS,
) -> Anchor:
    """The operator's acknowledgement, once an incident is recorded (a backup restore, a
    cut or rewritten chain, a damaged or missing anchor): the chain's current head as the
    next anchor, marked `reanchored` and linked to the newest object there is, whether it
    verifies or not. From it on the history holds together again; verify reports what
    was wrong before it as a note. Only the holder of the anchor key can write one."""
    now = now or datetime.now(UTC)
    async with db.advisory_lock(_ANCHOR_LOCK, wait=True):
        found = await find_newest(blobs, chain, 0)
        previous = (found[0], hashlib.sha256(found[1]).digest()) if found is not None else None
        async with db.tenant_tx(chain) as conn:
            seq, row_hash = await _head(conn, Q, chain)
            disclosures = await _head(conn, D, chain)
        stored = await write_anchor(
            blobs, keys, chain, seq, row_hash, now, previous, AnchorMemory(), retain_days,
            disclosures=disclosures, reanchored=True,
        )  # fmt: skip
    log.warning("access_log_reanchored", chain=str(chain), anchor_seq=stored.anchor.anchor_seq)
    return stored.anchor
