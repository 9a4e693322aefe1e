"""Erasure deadlines (GDPR Art. 12(3)): 30 days, or one calendar month if sooner."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

ERASURE_DEADLINE = timedelta(days=30)
# DESIGN.md: more erasures in an hour than the tenant's brake allows wait this long,
# in case a stolen erasure key is being used; an admin can let them through sooner.
ERASURE_BRAKE_DELAY = timedelta(hours=24)


def add_calendar_month(moment: datetime) -> datetime:
    """The same day next month, or the month's last day when it has no such day."""
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def erasure_due_at(requested_at: datetime) -> datetime:
    return min(requested_at + ERASURE_DEADLINE, add_calendar_month(requested_at))


# How long before its deadline a clamped erasure becomes due at the latest: the executor
# runs every 2 s and a non-held erasure completes within a minute of `not_before`, so an
# hour leaves room for a worker restart or a short database outage.
ERASURE_RUN_MARGIN = timedelta(hours=1)


def erasure_not_before(requested_at: datetime, grace: timedelta, braked: bool) -> datetime:
    """When an erasure requested at `requested_at` may run: after the tenant's grace
    period (and the rate brake's 24 h when it applies), but never so late that it cannot
    meet its deadline. A grace period of up to 29 days is accepted as a setting, yet a
    month after a day in February is only 28 days (29 in a leap year): the setting is
    kept and each request is clamped to ERASURE_RUN_MARGIN before its own `due_at`."""
    wanted = requested_at + grace
    if braked:
        wanted = max(wanted, requested_at + ERASURE_BRAKE_DELAY)
    return min(wanted, erasure_due_at(requested_at) - ERASURE_RUN_MARGIN)


# AWS KMS deletes a key scheduled for deletion after at least 7 days (the window the vault
# asks for when it retires an epoch): until then the old root key still exists.
KMS_DELETION_WINDOW = timedelta(days=7)
# The epoch schedule runs every 10 minutes (workers/epochs.py): a due epoch starts, and an
# ended one retires, up to one run late each.
EPOCH_SCHEDULE_SLACK = timedelta(minutes=20)


def backups_unreadable_after(
    now: datetime,
    epoch_started: datetime,
    epoch_days: int,
    backup_retention_days: int,
    root_key_in_kms: bool,
) -> datetime | None:
    """When no copy of a key destroyed now (in a backup, WAL, a replica) can be opened any
    more: once the next root-key epoch has started (when it is due, or at once if it is
    overdue), the backup retention has passed and the current epoch's root key is
    destroyed (with KMS: after its deletion window). None when no next epoch is scheduled
    (DATAVAULT_EPOCH_DAYS=0): nothing then bounds it. Never a time before `now`."""
    if epoch_days <= 0:
        return None
    next_epoch = max(now, epoch_started + timedelta(days=epoch_days))
    horizon = next_epoch + timedelta(days=backup_retention_days) + EPOCH_SCHEDULE_SLACK
    return horizon + KMS_DELETION_WINDOW if root_key_in_kms else horizon
