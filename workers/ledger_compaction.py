"""Shred-ledger compaction: ledger objects that no backup the vault could serve can need
any more fold into a signed checkpoint (vault/services/ledger_checkpoint.py) and are
then removed. Which ones may fold is vault/domain/ledger_folding.py's rule.

A job in every `worker` and `serve` process (hourly, one process at a time on an advisory
lock): objects become foldable only when a root-key epoch retires, which the epoch
schedule does by itself, so the ledger's size stays bounded without anyone remembering.
`datavault ledger compact` runs the same pass at once (`--dry-run`: only say what would
fold). An hourly pass that finds nothing to do costs two listings and one query.

The order makes every step restartable and leaves a ledger that verifies wherever it
stops:
1. the whole ledger is verified first: a checkpoint never vouches for a ledger that was
   cut or changed (the job then fails, and counts an integrity failure);
2. the checkpoint is written (under Object Lock where the bucket has it), its link to the
   previous checkpoint and to the head it replaces checked by reading it back;
3. the database records how far the ledger is folded (for the gauges);
4. the folded objects are removed. An object a checkpoint folds but that is still there
   is checked against the checkpoint by verify and removed by the next pass; start-up
   never reads one (the database's head is never older than the checkpoint).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from vault.blobs.base import BlobStore
from vault.db.database import Database
from vault.db.sql import Queries
from vault.domain.ledger_folding import EpochRecord, FoldBound, NoFold, fold_bound, may_fold
from vault.observability.metrics import Metrics
from vault.services.erasure_receipts import ReceiptIssuer
from vault.services.ledger import verify_ledger
from vault.services.ledger_checkpoint import (
    CHECKPOINT_PREFIX,
    MAX_OBJECTS_PER_CHECKPOINT,
    Checkpoint,
    FoldedRun,
    checkpoint_key,
    checkpoint_seq,
    decode_checkpoint,
    encode_checkpoint,
)
from vault.services.ledger_instructions import is_instruction
from vault.services.ledger_objects import (
    GENESIS,
    LEDGER_PREFIX,
    LedgerError,
    LedgerObject,
    entry_key,
    entry_seq,
)
from vault.services.ledger_watermark import LedgerWatermark
from vault.services.receipts import published_keys
from vault.services.root_epochs import list_epochs

Q = Queries("ledger")
log = structlog.get_logger("datavault.ledger_compaction")

# Objects become foldable when an epoch retires (every DATAVAULT_EPOCH_DAYS): an hourly
# look costs two listings and a query, and folds within the hour once they are.
LEDGER_COMPACTION_INTERVAL_SECONDS = 3600.0
# One compaction at a time across every process and `datavault ledger compact`.
_COMPACTION_LOCK = 0x6476_6C65_6466  # "dvledf"
_REMOVE_AT_ONCE = 32  # deletions in flight at once (one request each on S3)


@dataclass(frozen=True)
class CompactionReport:
    ran: bool  # False: another process was compacting
    dry_run: bool = False
    checkpoints: tuple[int, ...] = ()  # the last seq of each checkpoint written
    folded_objects: int = 0
    folded_entries: int = 0
    removed_objects: int = 0  # removed by this pass (with any a stopped pass left)
    folded_through: int = 0  # how far the ledger is folded after this pass
    reason: str | None = None  # why nothing (more) folds now


_HASH = 32
# A pass folds at most this many objects (ten checkpoints); what it holds of them while it
# walks is their hashes, 32 MB. The rest folds on the next pass.
MAX_OBJECTS_PER_PASS = 10 * MAX_OBJECTS_PER_CHECKPOINT
_LONG_AGO = datetime.min.replace(tzinfo=UTC)


@dataclass
class _Chunk:
    """Objects one checkpoint folds: their hashes in order and what their entries were."""

    first_seq: int
    hashes: bytearray = field(default_factory=bytearray)
    entries: int = 0
    newest_destroyed_at: datetime = _LONG_AGO

    @property
    def count(self) -> int:
        return len(self.hashes) // _HASH

    @property
    def through_seq(self) -> int:
        return self.first_seq + self.count - 1


@dataclass
class _Collector:
    """The foldable prefix of the objects after the checkpoints, as verify walks them: a
    prefix only, since the objects kept must stay one chain."""

    bound: FoldBound | None
    chunks: list[_Chunk] = field(default_factory=list)
    objects: int = 0
    stopped_at: int | None = None  # the first object that may not fold

    def visit(self, entry: LedgerObject) -> None:
        if self.bound is None or self.stopped_at is not None:
            return
        if self.objects >= MAX_OBJECTS_PER_PASS:
            return
        try:
            times = [datetime.fromisoformat(e["destroyed_at"]) for e in entry.entries]
            # Only the signed marker that began ledger signing has no entries (when
            # nothing was pending): it folds by its seq alone.
            if (not times and entry.key_id is None) or any(t.tzinfo is None for t in times):
                raise ValueError("no entries, or a time without its offset")
        except (KeyError, TypeError, ValueError) as exc:
            raise LedgerError(f"ledger entry {entry.seq} is malformed") from exc
        if not may_fold(self.bound, entry.seq, max(times, default=_LONG_AGO)):
            self.stopped_at = entry.seq
            return
        if not self.chunks or self.chunks[-1].count >= MAX_OBJECTS_PER_CHECKPOINT:
            self.chunks.append(_Chunk(entry.seq))
        chunk = self.chunks[-1]
        chunk.hashes += entry.hash
        chunk.entries += sum(1 for e in entry.entries if not is_instruction(e))  # keys
        chunk.newest_destroyed_at = max([chunk.newest_destroyed_at, *times])
        self.objects += 1


async def compact_ledger(
    db: Database,
    blobs: BlobStore,
    issuer: ReceiptIssuer,
    *,
    watermark: LedgerWatermark | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
    wait: bool = False,
) -> CompactionReport:
    """Fold what the rule allows into checkpoints and remove it; finish what a stopped
    pass left. LedgerError (and nothing written) when the ledger does not verify. `wait`:
    wait for another process's pass instead of skipping this one (the CLI)."""
    now = now or datetime.now(UTC)
    async with db.advisory_lock(_COMPACTION_LOCK, wait=wait) as held:
        if not held:
            return CompactionReport(ran=False)
        epochs = [
            EpochRecord(e.epoch, e.started_at, e.retired_at, e.ledger_seq_at_start)
            for e in await list_epochs(db)
        ]
        decision = fold_bound(epochs, now, issuer.backup_retention_days, issuer.root_key_in_kms)
        bound = decision if isinstance(decision, FoldBound) else None
        # Cheap first look: the names of the newest checkpoint and the lowest object.
        named = [
            seq for k in await blobs.list_keys(CHECKPOINT_PREFIX) if (seq := checkpoint_seq(k))
        ]
        folded_by_name = max(named, default=0)
        lowest = await blobs.list_keys(LEDGER_PREFIX, limit=1)
        lowest_seq = (entry_seq(lowest[0]) or 0) if lowest else None
        left_over = lowest_seq is not None and lowest_seq <= folded_by_name
        if not left_over and (bound is None or bound.through_seq <= folded_by_name):
            return CompactionReport(
                ran=True, dry_run=dry_run, folded_through=folded_by_name,
                reason=_why_not(decision, folded_by_name),
            )  # fmt: skip

        collector = _Collector(bound)
        summary = await verify_ledger(db, blobs, watermark, collector.visit)
        chunks = collector.chunks
        folded_objects = sum(c.count for c in chunks)
        folded_entries = sum(c.entries for c in chunks)
        through = summary.folded_through + folded_objects
        reason = None if chunks else _why_not(decision, summary.folded_through, collector)
        if dry_run:
            first = lowest_seq if lowest_seq is not None else through + 1
            return CompactionReport(
                ran=True, dry_run=True, checkpoints=tuple(c.through_seq for c in chunks),
                folded_objects=folded_objects, folded_entries=folded_entries,
                removed_objects=max(0, through - first + 1), folded_through=through,
                reason=reason,
            )  # fmt: skip

        previous = summary.newest_checkpoint
        if previous is not None:  # a pass that stopped before recording its checkpoint
            async with db.untenanted_tx() as conn:
                await conn.execute(Q.record_folded, previous.through_seq, previous.folded_at)
        if chunks:
            assert bound is not None
            jwks = await published_keys(db)
            for chunk in chunks:
                previous = await _write_checkpoint(blobs, issuer, bound, previous, chunk, jwks, now)
                async with db.untenanted_tx() as conn:
                    await conn.execute(Q.record_folded, previous.through_seq, now)
                log.info("ledger_folded", through=previous.through_seq, objects=chunk.count,
                         entries=chunk.entries, epoch=bound.epoch)  # fmt: skip
        removed = await _remove_folded(blobs, through)
        return CompactionReport(
            ran=True, checkpoints=tuple(c.through_seq for c in chunks),
            folded_objects=folded_objects, folded_entries=folded_entries,
            removed_objects=removed, folded_through=through, reason=reason,
        )  # fmt: skip


async def _write_checkpoint(
    blobs: BlobStore,
    issuer: ReceiptIssuer,
    bound: FoldBound,
    previous: Checkpoint | None,
    chunk: _Chunk,
    jwks: Any,
    now: datetime,
) -> Checkpoint:
    after_seq = previous.through_seq if previous is not None else 0
    if chunk.first_seq != after_seq + 1:
        raise AssertionError("a fold continues where the previous checkpoint ended")
    run = FoldedRun(
        after_seq=after_seq,
        after_head=previous.through_head if previous is not None else GENESIS,
        object_hashes=[
            bytes(chunk.hashes[i : i + _HASH]) for i in range(0, len(chunk.hashes), _HASH)
        ],
        entries=chunk.entries,
        newest_destroyed_at=chunk.newest_destroyed_at,
    )
    data = encode_checkpoint(run, bound, previous, issuer.signer, issuer.issuer, now)
    key = checkpoint_key(run.through_seq)
    until = now + timedelta(days=issuer.backup_retention_days + 1)
    await blobs.put_retained(key, data, until)
    # Read back and checked as every reader will check it, before anything is removed.
    return decode_checkpoint(await blobs.get(key), jwks, key)


async def _remove_folded(blobs: BlobStore, through: int) -> int:
    """Remove every ledger object up to `through`, from the lowest one there; how many
    (a pass stopped half way may have removed a few of them already)."""
    lowest = await blobs.list_keys(LEDGER_PREFIX, limit=1)
    first = entry_seq(lowest[0]) if lowest else None
    if first is None or first > through:
        return 0
    for start in range(first, through + 1, _REMOVE_AT_ONCE):
        window = range(start, min(start + _REMOVE_AT_ONCE, through + 1))
        # Every removal of the window ends before the pass stops on one that failed: a
        # pass that raised while others still ran left a ledger changing under whoever
        # looked next (the next pass, a verifier).
        results = await asyncio.gather(
            *(blobs.delete(entry_key(seq)) for seq in window), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
    return through - first + 1


def _why_not(decision: FoldBound | NoFold, folded: int, collector: _Collector | None = None) -> str:
    if isinstance(decision, NoFold):
        return decision.reason
    stopped = collector.stopped_at if collector is not None else None
    if stopped is not None and stopped <= decision.through_seq:
        return (
            f"ledger entry {stopped} names a key destroyed within the backup "
            f"retention ({decision.backup_retention_days} days)"
        )
    return (
        f"folded through entry {folded}: the ledger head when epoch {decision.epoch} "
        f"began is {decision.through_seq}, and later entries stay until it retires"
    )


async def compact_on_schedule(
    db: Database,
    blobs: BlobStore,
    issuer: ReceiptIssuer,
    watermark: LedgerWatermark | None,
    metrics: Metrics,
) -> CompactionReport:
    """The job's pass: a ledger that does not verify is an integrity failure (counted,
    and the job fails until it is dealt with; docs/runbook.md)."""
    try:
        report = await compact_ledger(db, blobs, issuer, watermark=watermark)
    except LedgerError:
        metrics.integrity_failures.labels("shred_ledger").inc()
        raise
    metrics.ledger_folded_objects.inc(report.folded_objects)
    return report
