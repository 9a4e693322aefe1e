"""The overdue monitor: refreshes the deletion-guarantee gauges from the database.

The gauges describe the deployment, not the process: every replica reads the same rows,
so whichever instance Prometheus scrapes reports the same values (a process-local
counter of "keys destroyed" would differ per replica and reset on restart). Row-level
security allows no cross-tenant query, so the monitor asks each tenant in its own
tenant_tx (one small query each) and sums; tenant ids never become labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vault.db.database import Database
from vault.db.sql import Queries
from vault.observability.metrics import ERASURE_STATUSES, Metrics
from vault.services.tenants import list_tenants

Q = Queries("monitor")

# Alerts on these gauges wait minutes (`for: 5m`/`10m`), and the erasure target is a
# minute after not_before: 15 s is four refreshes per Prometheus' usual 1-minute scrape
# window at a cost of one small indexed query per tenant, so a stale value never hides
# an overdue erasure for long and the database barely notices.
MONITOR_INTERVAL_SECONDS = 15.0


@dataclass
class MonitorSnapshot:
    """The values the gauges were set to (deployment-wide sums)."""

    at: datetime
    erasures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERASURE_STATUSES, 0))
    oldest_open_age_seconds: float = 0.0
    overdue: int = 0
    rate_braked: int = 0
    root_epoch_age_seconds: float = 0.0
    holds_active: int = 0
    holds_expiring_7d: int = 0
    keys_destroyed: int = 0
    ledger_lag_seconds: float = 0.0
    worker_job_lag_seconds: float = 0.0
    webhook_pending: int = 0
    webhook_queue_age_seconds: float = 0.0
    ledger_objects: int = 0
    ledger_folded_through: int = 0
    tenants: int = 0


def _age(now: datetime, since: datetime | None) -> float:
    return max(0.0, (now - since).total_seconds()) if since is not None else 0.0


def _add(snapshot: MonitorSnapshot, row: Any) -> None:
    now = snapshot.at
    for status in ERASURE_STATUSES:
        snapshot.erasures[status] += int(row[status])
    snapshot.overdue += int(row["overdue"])
    snapshot.rate_braked += int(row["rate_braked"])
    snapshot.holds_active += int(row["holds_active"])
    snapshot.holds_expiring_7d += int(row["holds_expiring_7d"])
    snapshot.keys_destroyed += int(row["keys_destroyed"])
    snapshot.oldest_open_age_seconds = max(
        snapshot.oldest_open_age_seconds, _age(now, row["oldest_open_requested_at"])
    )
    snapshot.worker_job_lag_seconds = max(
        snapshot.worker_job_lag_seconds, _age(now, row["oldest_due_not_before"])
    )
    snapshot.ledger_lag_seconds = max(
        snapshot.ledger_lag_seconds, _age(now, row["oldest_unpublished_destroyed_at"])
    )
    snapshot.webhook_pending += int(row["webhook_pending"])
    snapshot.webhook_queue_age_seconds = max(
        snapshot.webhook_queue_age_seconds, _age(now, row["oldest_webhook_pending_at"])
    )


async def refresh_gauges(
    db: Database, metrics: Metrics, now: datetime | None = None
) -> MonitorSnapshot:
    """Read every tenant's erasure, hold and ledger state and set the gauges.

    `now` defaults to the wall clock; tests pass a later one to see an erasure overdue.
    The gauges are set only after every tenant answered, so a failed round leaves the
    previous values (and the job runner logs it) rather than publishing partial sums.
    """
    snapshot = MonitorSnapshot(at=now or datetime.now(UTC))
    for tenant in await list_tenants(db):
        async with db.tenant_tx(tenant.id) as conn:
            row = await conn.fetchrow(Q.tenant_gauges, tenant.id, snapshot.at)
        assert row is not None  # aggregates always return one row
        _add(snapshot, row)
        snapshot.tenants += 1
    async with db.untenanted_tx() as conn:
        epoch_started = await conn.fetchval(Q.current_epoch_started)
        ledger = await conn.fetchrow(Q.ledger_state)
    if ledger is not None:
        snapshot.ledger_folded_through = int(ledger["folded_through"])
        snapshot.ledger_objects = max(0, int(ledger["seq"]) - snapshot.ledger_folded_through)
    snapshot.root_epoch_age_seconds = _age(snapshot.at, epoch_started)
    for status, count in snapshot.erasures.items():
        metrics.erasures.labels(status).set(count)
    metrics.erasure_oldest_open_age.set(snapshot.oldest_open_age_seconds)
    metrics.erasures_overdue.set(snapshot.overdue)
    metrics.erasures_rate_braked.set(snapshot.rate_braked)
    metrics.root_epoch_age.set(snapshot.root_epoch_age_seconds)
    metrics.holds_active.set(snapshot.holds_active)
    metrics.holds_expiring_7d.set(snapshot.holds_expiring_7d)
    metrics.keys_destroyed.set(snapshot.keys_destroyed)
    metrics.ledger_lag.set(snapshot.ledger_lag_seconds)
    metrics.worker_job_lag.set(snapshot.worker_job_lag_seconds)
    metrics.webhook_deliveries_pending.set(snapshot.webhook_pending)
    metrics.webhook_queue_age.set(snapshot.webhook_queue_age_seconds)
    metrics.ledger_objects.set(snapshot.ledger_objects)
    metrics.ledger_folded_through.set(snapshot.ledger_folded_through)
    return snapshot
