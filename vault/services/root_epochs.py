"""Root-key epochs: start a new one (everything live is rewrapped under it), retire an
old one once the operator's backups can no longer hold anything it protects.

Wrapped key bytes survive in PostgreSQL dead tuples, WAL, replicas and backups; once an
epoch's root key is destroyed, every such leftover wrapped under it is unreadable
anywhere. Retiring waits DATAVAULT_BACKUP_RETENTION_DAYS after the epoch ended, so no
backup still restorable needs it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from crypto.providers.base import RootKeyProvider
from vault.db.database import Database
from vault.db.sql import Queries
from vault.domain.tenant_keys import holds_keys
from vault.errors import Conflict, TenantClosed, UnknownEpoch
from vault.services.key_rotation import RotationReport, rewrap_deployment_secrets, rotate_tenant_kek
from vault.services.keyring import KeyRing
from vault.services.receipts import receipt_keys_under_epoch, rewrap_receipt_keys
from vault.services.tenants import list_tenants

Q = Queries("keys")


# How often every process re-reads the epoch list (RecordedEpochProvider), and how long
# `new-epoch` waits after recording a new KMS epoch before wrapping anything under it, so
# that no running process meets a key wrapped under an epoch it does not know yet.
EPOCH_REFRESH_SECONDS = 10.0
KMS_EPOCH_PROPAGATION_SECONDS = 2 * EPOCH_REFRESH_SECONDS + 5


@runtime_checkable
class EpochManagedProvider(Protocol):
    """A provider that can make and destroy root keys itself: the local key file (new
    random key; destroyed = removed from the file) and aws-kms (a new KMS key per epoch;
    destroyed = scheduled for deletion)."""

    def add_epoch(self) -> int: ...

    def destroy_epoch(self, epoch: int) -> None: ...


@runtime_checkable
class RecordedEpochProvider(Protocol):
    """A provider whose epochs live in the database's epoch list (aws-kms: which KMS key
    each epoch uses), not in a file every process re-reads."""

    def epoch_key_id(self, epoch: int) -> str | None: ...

    def adopt_epochs(self, keys: Mapping[int, str], destroyed: set[int]) -> None: ...


async def sync_root_epochs(db: Database, root: RootKeyProvider) -> None:
    """Hand the recorded epochs to a RecordedEpochProvider; a no-op for the others. Runs
    at start and every EPOCH_REFRESH_SECONDS in every process."""
    if not isinstance(root, RecordedEpochProvider):
        return
    async with db.untenanted_tx() as conn:
        rows = await conn.fetch(Q.epochs)
    keys = {r["epoch"]: r["kms_key_id"] for r in rows if r["kms_key_id"] and not r["retired_at"]}
    destroyed = {r["epoch"] for r in rows if r["retired_at"]}
    await asyncio.to_thread(root.adopt_epochs, keys, destroyed)


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    tenants: tuple[RotationReport, ...]
    deployment_secrets_rewrapped: int


async def rotate_everything(
    db: Database,
    keyring: KeyRing,
    root: RootKeyProvider,
    tenant_ids: list[uuid.UUID] | None = None,
    ledger_seq_at_start: int | None = None,
) -> EpochReport:
    """New KEK versions under the current root epoch for the given tenants (default: every
    tenant that holds keys, so not a closed one), subject keys rewrapped; deployment
    secrets moved to the current epoch.
    `ledger_seq_at_start`: for an epoch not recorded yet, the shred ledger's head read
    before its root key existed (None: not known, and the epoch never lets the ledger
    fold; vault/domain/ledger_folding.py)."""
    async with db.untenanted_tx() as conn:
        await conn.execute(Q.record_epoch, root.current_epoch(), ledger_seq_at_start)
        await conn.execute(Q.end_epochs_before, root.current_epoch())
    secrets = await rewrap_deployment_secrets(db, root)
    secrets += await rewrap_receipt_keys(db, root)
    if tenant_ids is not None:  # named by the operator: a closed one is refused
        named = [await rotate_tenant_kek(db, keyring, root, t) for t in tenant_ids]
        return EpochReport(root.current_epoch(), tuple(named), secrets)
    reports = []
    for tenant in await list_tenants(db):
        if not holds_keys(tenant.status):
            continue  # closed: it keeps no live KEK (vault/domain/tenant_keys.py)
        try:
            reports.append(await rotate_tenant_kek(db, keyring, root, tenant.id))
        except TenantClosed:
            continue  # its closure finished since the directory was read
    return EpochReport(root.current_epoch(), tuple(reports), secrets)


async def start_new_epoch(
    db: Database, keyring: KeyRing, root: RootKeyProvider,
    propagation_seconds: float = KMS_EPOCH_PROPAGATION_SECONDS,
) -> EpochReport:  # fmt: skip
    """A new root key (local: in the key file; aws-kms: a new KMS key, recorded in the
    epoch list), then everything live rewrapped under it."""
    if not isinstance(root, EpochManagedProvider):
        raise Conflict(
            f"the {root.name} provider does not create root keys itself: create a new key, "
            "list it as the newest epoch in DATAVAULT_ROOT_KEY, then run `datavault keys rotate`"
        )
    # Before the new root key exists: every ledger object up to this head names keys
    # destroyed before anything could be wrapped under it, so once the older epochs are
    # retired those objects may fold into a checkpoint.
    async with db.untenanted_tx() as conn:
        ledger_seq = int(await conn.fetchval(Q.ledger_head_seq))
    if isinstance(root, RecordedEpochProvider):
        await sync_root_epochs(db, root)
        async with db.untenanted_tx() as conn:
            current = root.current_epoch()
            await conn.execute(Q.record_epoch_key, current, root.epoch_key_id(current), None)
        epoch = await asyncio.to_thread(root.add_epoch)
        async with db.untenanted_tx() as conn:
            await conn.execute(Q.record_epoch_key, epoch, root.epoch_key_id(epoch), ledger_seq)
        # Running processes learn the new epoch from the list within EPOCH_REFRESH_SECONDS.
        await asyncio.sleep(propagation_seconds)
    else:
        await asyncio.to_thread(root.add_epoch)
    return await rotate_everything(db, keyring, root, ledger_seq_at_start=ledger_seq)


@dataclass(frozen=True)
class EpochState:
    epoch: int
    started_at: datetime
    ended_at: datetime | None
    retired_at: datetime | None
    ledger_seq_at_start: int | None = None  # the shred ledger's head when it began


async def list_epochs(db: Database) -> list[EpochState]:
    async with db.untenanted_tx() as conn:
        rows = await conn.fetch(Q.epochs)
    return [
        EpochState(
            r["epoch"], r["started_at"], r["ended_at"], r["retired_at"], r["ledger_seq_at_start"]
        )
        for r in rows
    ]


async def retire_epoch(
    db: Database, root: RootKeyProvider, epoch: int, backup_retention_days: int,
    now: datetime | None = None,
) -> EpochState:  # fmt: skip
    """Destroy an old epoch's root key; refuse while backups may still need it or while
    anything live is still wrapped under it."""
    now = now or datetime.now(UTC)
    state = next((e for e in await list_epochs(db) if e.epoch == epoch), None)
    if state is None:
        raise UnknownEpoch(f"no root key epoch {epoch}")
    if state.retired_at is not None:
        return state  # retiring twice is harmless
    if epoch == root.current_epoch() or state.ended_at is None:
        raise Conflict(f"epoch {epoch} is current; start a new epoch first")
    retire_after = state.ended_at + timedelta(days=backup_retention_days)
    if now < retire_after:
        raise Conflict(
            f"epoch {epoch} ended {state.ended_at.date()}; backups may need it until "
            f"{retire_after.isoformat()} (DATAVAULT_BACKUP_RETENTION_DAYS={backup_retention_days})"
        )
    live = await _live_under_epoch(db, epoch)
    if live:
        raise Conflict(
            f"{live} keys are still wrapped under epoch {epoch}; run `datavault keys rotate`"
        )
    if not isinstance(root, EpochManagedProvider):
        raise Conflict(f"schedule deletion of epoch {epoch}'s key in {root.name} yourself")
    await sync_root_epochs(db, root)  # so aws-kms knows which KMS key epoch N used
    await asyncio.to_thread(root.destroy_epoch, epoch)
    async with db.untenanted_tx() as conn:
        await conn.execute(Q.retire_epoch, epoch)
    return EpochState(epoch, state.started_at, state.ended_at, now, state.ledger_seq_at_start)


async def _live_under_epoch(db: Database, epoch: int) -> int:
    live = 0
    async with db.untenanted_tx() as conn:
        live += int(await conn.fetchval(Q.secrets_under_epoch, epoch))
    live += await receipt_keys_under_epoch(db, epoch)
    for tenant in await list_tenants(db):
        async with db.tenant_tx(tenant.id) as conn:
            live += int(await conn.fetchval(Q.keks_under_epoch, tenant.id, epoch))
            live += int(await conn.fetchval(Q.hmac_keys_under_epoch, tenant.id, epoch))
    return live
