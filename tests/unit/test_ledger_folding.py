"""Which shred-ledger objects may fold into a checkpoint (vault/domain/ledger_folding.py):
only what no backup the vault could serve can need. Each condition at its edge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vault.domain.deadlines import KMS_DELETION_WINDOW
from vault.domain.ledger_folding import EpochRecord, FoldBound, NoFold, fold_bound, may_fold

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
RETENTION = 35


def _epochs(
    retired_ago: timedelta | None = timedelta(days=1), seq_at_start: int | None = 40
) -> list[EpochRecord]:
    """Epoch 1 (retired `retired_ago` ago, or live), epoch 2 began at ledger head
    `seq_at_start`."""
    retired = NOW - retired_ago if retired_ago is not None else None
    return [
        EpochRecord(1, NOW - timedelta(days=100), retired, 0),
        EpochRecord(2, NOW - timedelta(days=70), None, seq_at_start),
    ]


def _bound(epochs: list[EpochRecord], *, kms: bool = False) -> FoldBound:
    bound = fold_bound(epochs, NOW, RETENTION, kms)
    assert isinstance(bound, FoldBound), bound
    return bound


def test_objects_up_to_the_head_when_the_oldest_live_epoch_began_may_fold() -> None:
    bound = _bound(_epochs())
    assert (bound.epoch, bound.through_seq) == (2, 40)
    old = NOW - timedelta(days=RETENTION, seconds=1)
    assert may_fold(bound, 40, old)
    assert not may_fold(bound, 41, old)  # published after the epoch began: a copy may be under it


def test_nothing_folds_while_every_epoch_is_live() -> None:
    decision = fold_bound(_epochs(retired_ago=None), NOW, RETENTION, False)
    assert isinstance(decision, NoFold) and "no epoch before epoch 1" in decision.reason


def test_an_epoch_recorded_without_its_ledger_head_lets_nothing_fold() -> None:
    decision = fold_bound(_epochs(seq_at_start=None), NOW, RETENTION, False)
    assert isinstance(decision, NoFold) and "without the ledger head" in decision.reason


def test_an_entry_destroyed_within_the_backup_retention_never_folds() -> None:
    bound = _bound(_epochs())
    edge = NOW - timedelta(days=RETENTION)
    assert not may_fold(bound, 1, edge)  # exactly the retention ago: still kept
    assert may_fold(bound, 1, edge - timedelta(microseconds=1))
    assert not may_fold(bound, 1, NOW)


def test_with_the_root_key_in_kms_the_deletion_window_must_pass_first() -> None:
    just = _epochs(retired_ago=KMS_DELETION_WINDOW - timedelta(seconds=1))
    decision = fold_bound(just, NOW, RETENTION, True)
    assert isinstance(decision, NoFold) and "may still be restored" in decision.reason
    assert isinstance(fold_bound(just, NOW, RETENTION, False), FoldBound)  # local: at once
    bound = _bound(_epochs(retired_ago=KMS_DELETION_WINDOW), kms=True)
    assert bound.kms_deletion_window_days == KMS_DELETION_WINDOW.days


def test_an_older_epoch_still_live_holds_the_bound_at_its_own_start() -> None:
    """Epoch 3 is live and began later, but epoch 2 is not retired: only what preceded
    epoch 2 folds."""
    epochs = [
        *_epochs(),
        EpochRecord(3, NOW - timedelta(days=40), None, 90),
    ]
    assert _bound(epochs).through_seq == 40
    epochs[1] = EpochRecord(2, NOW - timedelta(days=70), NOW - timedelta(days=2), 40)
    assert _bound(epochs).through_seq == 90
