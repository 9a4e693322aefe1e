"""The deletion invariants, checked: `datavault check deletion` and a scheduled job that
exports the count as `datavault_deletion_invariant_violations`.

What must hold (DESIGN.md, Deletion guarantees):
- no live key in a generation an erasure shredded, except what a hold in force or
  statutory retention keeps (`live_key_in_erased_generation`);
- no key in a generation the subject has not reached (`key_beyond_generation`);
- no live data key of a deleted or replaced version unless a hold keeps it
  (`deleted_version_live`), and none of data past its retention that nothing keeps
  (`expired_data_live`);
- every destroyed key in the shred ledger (`destroyed_key_not_in_ledger`), published
  outside PostgreSQL within the grace (`ledger_lagging`);
- no erasure past its due date undone (`erasure_overdue`), none completed before its
  ledger rows are published (`erasure_completed_before_ledger`);
- a closed tenant holds no live KEK or HMAC key (`closed_tenant_keys_live`).

It reads every tenant in one repeatable-read snapshot as the read-only role
datavault_auditor, so a bug in tenant isolation cannot hide a violation. What a job is
about to do anyway (a hold released seconds ago, the retention job's next pass) is
reported only once `grace` has passed. Findings name ids and kinds, never a reference or
any data.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.domain.tenant_settings import TenantSettings
from vault.observability.metrics import Metrics

Q = Queries("deletion_check")
log = structlog.get_logger("datavault.workers")

# The scheduled check's grace: longer than the retention job's interval (5 minutes) and
# the ledger publisher's, so only what the jobs failed to do is reported.
DEFAULT_GRACE = timedelta(minutes=15)
CHECK_INTERVAL_SECONDS = 300.0


@dataclass(frozen=True)
class Violation:
    kind: str
    tenant_id: uuid.UUID | None
    detail: str

    def describe(self) -> str:
        where = f"tenant {self.tenant_id}: " if self.tenant_id else ""
        return f"{self.kind}: {where}{self.detail}"


async def find_deletion_violations(
    db: Database | str, *, grace: timedelta = DEFAULT_GRACE, now: datetime | None = None
) -> list[Violation]:
    """Every violation of the deletion invariants, as of `now` with `grace` allowed for
    the jobs. `db`: the vault's database, or its URL (the owner's login)."""
    if isinstance(db, str):
        database = await Database.connect(db, max_size=1)
        try:
            return await find_deletion_violations(database, grace=grace, now=now)
        finally:
            await database.close()
    now = now or datetime.now(UTC)
    async with db.auditor_tx() as conn:
        settings = await _settings(conn)
        found = await _erased_generations(conn, settings, now, grace)
        found += [
            Violation(
                "key_beyond_generation",
                r["tenant_id"],
                f"subject key {r['key_id']} is in generation {r['generation']}, "
                f"the subject in {r['subject_generation']}",
            )
            for r in await conn.fetch(Q.keys_beyond_generation)
        ]
        found += [
            Violation(
                "deleted_version_live", r["tenant_id"], f"{r['what']}: data key {r['key_id']}"
            )
            for r in await conn.fetch(Q.deleted_versions_live, now, grace)
        ]
        found += await _expired(conn, settings, now, grace)
        found += [
            Violation(
                "destroyed_key_not_in_ledger", r["tenant_id"], f"{r['kind']} key {r['key_id']}"
            )
            for r in await conn.fetch(Q.destroyed_not_in_ledger)
        ]
        found += [
            Violation(
                "ledger_lagging", r["tenant_id"], f"{r['kind']} key {r['key_id']} unpublished"
            )
            for r in await conn.fetch(Q.ledger_lagging, now, grace)
        ]
        found += [
            Violation(f"erasure_{r['problem']}", r["tenant_id"], f"erasure {r['erasure_id']}")
            for r in await conn.fetch(Q.erasures_wrong, now)
        ]
        found += [
            Violation(
                "closed_tenant_keys_live",
                r["tenant_id"],
                f"{r['live_keks']} KEK versions, {r['live_hmac']} HMAC keys and "
                f"{r['live_subject_keys']} subject keys still live",
            )
            for r in await conn.fetch(Q.closed_tenants_live)
            if r["live_keks"] or r["live_hmac"] or r["live_subject_keys"]
        ]
        found += [
            Violation("closure_overdue", r["tenant_id"], f"due {r['closure_due_at'].isoformat()}")
            for r in await conn.fetch(Q.closures_overdue, now, grace)
        ]
    return found


async def run_scheduled_check(db: Database, metrics: Metrics) -> int:
    """The worker's scheduled check: the count becomes the gauge the alert watches, and
    each finding a log line (kinds and ids only)."""
    violations = await find_deletion_violations(db)
    metrics.deletion_violations.set(len(violations))
    for violation in violations:
        log.error(
            "deletion_invariant_violated",
            kind=violation.kind,
            tenant_id=str(violation.tenant_id) if violation.tenant_id else None,
            detail=violation.detail,
        )
    return len(violations)


async def _erased_generations(
    conn: Connection, settings: dict[uuid.UUID, TenantSettings], now: datetime, grace: timedelta
) -> list[Violation]:
    found = []
    for row in await conn.fetch(Q.erased_generation_keys, now, grace):
        if row["held"]:
            continue
        tenant = settings.get(row["tenant_id"], TenantSettings())
        until = tenant.kept_until(row["category"], row["newest"]) if row["newest"] else None
        if until is not None and until > now - grace:
            continue
        found.append(
            Violation(
                "live_key_in_erased_generation",
                row["tenant_id"],
                f"subject key {row['key_id']} ({row['category']}, generation "
                f"{row['generation']}) live after erasure {row['erasure_id']} "
                f"({row['status']}) shredded that generation",
            )
        )
    return found


async def _expired(
    conn: Connection, settings: dict[uuid.UUID, TenantSettings], now: datetime, grace: timedelta
) -> list[Violation]:
    found = []
    for tenant_id, tenant in settings.items():
        for category, rules in tenant.retention.items():
            if rules.delete_after_days is None:
                continue
            cutoff = now - timedelta(days=rules.delete_after_days) - grace
            for row in await conn.fetch(Q.expired_live, now, grace, tenant_id, cutoff, category):
                until = tenant.kept_until(category, row["created_at"])
                if until is not None and until > now - grace:
                    continue  # statutory retention (perhaps a pending shortening) keeps it
                found.append(
                    Violation(
                        "expired_data_live",
                        tenant_id,
                        f"{row['kind']} {row['item']} ({category}) past delete_after_days "
                        f"{rules.delete_after_days}, data key {row['key_id']} live",
                    )
                )
    return found


async def _settings(conn: Connection) -> dict[uuid.UUID, TenantSettings]:
    return {
        row["id"]: TenantSettings.from_document(_document(row["settings"]))
        for row in await conn.fetch(Q.tenant_settings)
    }


def _document(value: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(value) if isinstance(value, str) else dict(value or {})
    return document
