"""The horizon a receipt states (`backups_unreadable_after`): once the next root-key epoch
has started, the backup retention has passed and the old root key is gone. Never a date
that has passed; none when no epoch is scheduled; the KMS deletion window counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vault.domain.deadlines import (
    EPOCH_SCHEDULE_SLACK,
    KMS_DELETION_WINDOW,
    backups_unreadable_after,
)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
RETENTION = 35


def test_a_current_epoch_bounds_it_by_its_next_start() -> None:
    started = NOW - timedelta(days=10)
    horizon = backups_unreadable_after(NOW, started, 30, RETENTION, root_key_in_kms=False)
    assert horizon == started + timedelta(days=30 + RETENTION) + EPOCH_SCHEDULE_SLACK


def test_an_overdue_epoch_never_yields_a_past_date() -> None:
    """An epoch that began 100 days ago with a 30-day schedule: the next one starts now at
    the earliest, so the horizon counts from now (it used to be 66 days in the past)."""
    started = NOW - timedelta(days=100)
    horizon = backups_unreadable_after(NOW, started, 30, RETENTION, root_key_in_kms=False)
    assert horizon is not None and horizon > NOW
    assert horizon == NOW + timedelta(days=RETENTION) + EPOCH_SCHEDULE_SLACK


def test_the_epoch_due_exactly_now_counts_from_now() -> None:
    started = NOW - timedelta(days=30)
    horizon = backups_unreadable_after(NOW, started, 30, RETENTION, root_key_in_kms=False)
    assert horizon == NOW + timedelta(days=RETENTION) + EPOCH_SCHEDULE_SLACK


def test_no_scheduled_epoch_states_no_horizon() -> None:
    started = NOW - timedelta(days=1)
    assert backups_unreadable_after(NOW, started, 0, RETENTION, root_key_in_kms=False) is None


def test_a_root_key_in_kms_adds_its_deletion_window() -> None:
    started = NOW - timedelta(days=10)
    local = backups_unreadable_after(NOW, started, 30, RETENTION, root_key_in_kms=False)
    kms = backups_unreadable_after(NOW, started, 30, RETENTION, root_key_in_kms=True)
    assert local is not None and kms == local + KMS_DELETION_WINDOW
    assert timedelta(days=7) == KMS_DELETION_WINDOW


def test_zero_backup_retention_still_waits_for_the_next_epoch() -> None:
    started = NOW - timedelta(days=29, hours=23)
    horizon = backups_unreadable_after(NOW, started, 30, 0, root_key_in_kms=False)
    assert horizon == started + timedelta(days=30) + EPOCH_SCHEDULE_SLACK
