"""Root-key epochs on a schedule (DESIGN.md "Residual copies").

Every DATAVAULT_EPOCH_DAYS a new epoch starts (everything live is rewrapped under a new
root key), and an ended epoch retires by itself once DATAVAULT_BACKUP_RETENTION_DAYS have
passed since it ended: its root key is destroyed, so wrapped key bytes left in dead
tuples, WAL, replicas and backups from that epoch are unreadable anywhere. This is what
makes the horizon an erasure receipt states (`backups_unreadable_after`) come true
without an operator remembering to run `keys new-epoch` / `keys retire-epoch`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from crypto.providers.base import RootKeyProvider
from vault.db.database import Database
from vault.errors import Conflict
from vault.services.keyring import KeyRing
from vault.services.root_epochs import list_epochs, retire_epoch, start_new_epoch

log = structlog.get_logger("datavault.workers.epochs")

EPOCH_SCHEDULE_INTERVAL_SECONDS = 600.0
# One scheduler at a time across every worker and `serve` process: two processes must
# not both decide to start the next epoch.
_SCHEDULE_LOCK = 0x6476_6570_6F63  # "dvepoc"


@dataclass(frozen=True)
class EpochSchedule:
    epoch_days: int  # 0: epochs only by command
    backup_retention_days: int


@dataclass(frozen=True)
class ScheduleOutcome:
    started: int | None  # the epoch started by this pass
    retired: tuple[int, ...]
    ran: bool  # False when another process holds the schedule lock


async def run_epoch_schedule(
    db: Database,
    keyring: KeyRing,
    root: RootKeyProvider,
    schedule: EpochSchedule,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ScheduleOutcome:
    if schedule.epoch_days == 0:
        return ScheduleOutcome(None, (), ran=True)
    async with db.advisory_lock(_SCHEDULE_LOCK) as held:
        if not held:
            return ScheduleOutcome(None, (), ran=False)
        # Read under the lock: another process may have just started one.
        started = await _start_if_due(db, keyring, root, schedule, clock())
        retired = await _retire_due(db, root, schedule, clock())
        return ScheduleOutcome(started, retired, ran=True)


async def _start_if_due(
    db: Database,
    keyring: KeyRing,
    root: RootKeyProvider,
    schedule: EpochSchedule,
    now: datetime,
) -> int | None:
    current = next((e for e in await list_epochs(db) if e.epoch == root.current_epoch()), None)
    if current is None or now - current.started_at < timedelta(days=schedule.epoch_days):
        return None
    try:
        report = await start_new_epoch(db, keyring, root)
    except Conflict:
        # A provider whose keys the operator creates (aws-kms without key creation
        # rights): the alert on epoch age tells them; nothing is half done.
        log.warning("epoch_due_needs_operator", provider=root.name)
        return None
    log.info("epoch_started", epoch=report.epoch, reason="schedule")
    return report.epoch


async def _retire_due(
    db: Database, root: RootKeyProvider, schedule: EpochSchedule, now: datetime
) -> tuple[int, ...]:
    retired = []
    for epoch in await list_epochs(db):
        if epoch.retired_at is not None or epoch.ended_at is None:
            continue
        if now < epoch.ended_at + timedelta(days=schedule.backup_retention_days):
            continue
        try:
            await retire_epoch(db, root, epoch.epoch, schedule.backup_retention_days, now=now)
        except Conflict as refused:
            # Keys still wrapped under it (an interrupted rotation) or a provider that
            # needs the operator: retried next pass, and visible in the log meanwhile.
            log.warning("epoch_retire_deferred", epoch=epoch.epoch, reason=str(refused))
            continue
        log.info("epoch_retired", epoch=epoch.epoch, reason="schedule")
        retired.append(epoch.epoch)
    return tuple(retired)
