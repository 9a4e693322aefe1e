"""Which shred-ledger objects may fold into a checkpoint: the rule, written once.

The ledger's entries are needed for one thing after the fact: a restored backup holds
keys destroyed since it was taken, and start-up destroys again every key the entries
after the backup's ledger head name. An entry is no longer needed once no backup the
vault could serve can hold its key, which is when every wrapped copy of that key lies
under a root-key epoch that is retired (its root key destroyed) and the backup
retention has passed since the key was destroyed. Concretely, an object may fold when:

1. its sequence number is at most the ledger head recorded when the oldest epoch not yet
   retired began (read before that epoch's root key existed, `root_epochs.
   ledger_seq_at_start`): every key it names was destroyed before that epoch began, so
   no copy of it was ever wrapped under that epoch or a later one, and every older epoch
   is retired;
2. where the root key is in KMS, the last of those older epochs was retired at least the
   KMS deletion window ago (until then a scheduled key deletion can be cancelled);
3. every entry in it was destroyed more than the backup retention ago.

A database whose ledger head is older than a checkpoint is then a backup from before that
epoch began: nothing in it opens, and start-up refuses it rather than serve it without
the entries it would need (vault/services/ledger.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from vault.domain.deadlines import KMS_DELETION_WINDOW


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    started_at: datetime
    retired_at: datetime | None
    ledger_seq_at_start: int | None  # None: recorded without it (not known)


@dataclass(frozen=True)
class FoldBound:
    """Objects up to `through_seq` whose entries were all destroyed before
    `destroyed_before` may fold."""

    epoch: int  # the oldest epoch not retired
    through_seq: int  # the ledger head when it began
    older_retired_by: datetime  # when the last older epoch was retired
    destroyed_before: datetime  # now minus the backup retention
    backup_retention_days: int
    kms_deletion_window_days: int  # 0 for a root key outside KMS


@dataclass(frozen=True)
class NoFold:
    """Why nothing may fold now."""

    reason: str


def fold_bound(
    epochs: list[EpochRecord],
    now: datetime,
    backup_retention_days: int,
    root_key_in_kms: bool,
) -> FoldBound | NoFold:
    live = [e for e in epochs if e.retired_at is None]
    if not live:
        return NoFold("no root-key epoch is live")
    oldest = min(live, key=lambda e: e.epoch)
    older = [e for e in epochs if e.epoch < oldest.epoch]
    if not older:
        return NoFold(f"no epoch before epoch {oldest.epoch} is retired yet")
    if oldest.ledger_seq_at_start is None:
        return NoFold(
            f"epoch {oldest.epoch} was recorded without the ledger head at its start; "
            "the next epoch will be"
        )
    retired_by = max(e.retired_at for e in older if e.retired_at is not None)
    window = KMS_DELETION_WINDOW if root_key_in_kms else timedelta(0)
    if now < retired_by + window:
        return NoFold(
            f"epoch {oldest.epoch - 1}'s KMS key may still be restored until "
            f"{(retired_by + window).isoformat()}"
        )
    return FoldBound(
        epoch=oldest.epoch,
        through_seq=oldest.ledger_seq_at_start,
        older_retired_by=retired_by,
        destroyed_before=now - timedelta(days=backup_retention_days),
        backup_retention_days=backup_retention_days,
        kms_deletion_window_days=window.days,
    )


def may_fold(bound: FoldBound, seq: int, newest_destroyed_at: datetime) -> bool:
    """Whether ledger object `seq`, whose newest entry was destroyed at
    `newest_destroyed_at`, may fold under `bound`."""
    return seq <= bound.through_seq and newest_destroyed_at < bound.destroyed_before
