"""Webhook delivery: at least once, with backoff, in order per erasure (and per hold).

Each pass claims due deliveries tenant by tenant (FOR UPDATE SKIP LOCKED, then a lease of
LEASE_SECONDS written in that short transaction), posts them outside any transaction, a
few at a time, and records each attempt with the delivery's next state in a transaction
of its own. A worker killed mid-attempt leaves its leased deliveries to the next worker
once the lease ends: the receiver may see a message twice (same webhook-id), never not at
all. A delivery waits while an earlier one about the same erasure, hold or tenant to the
same endpoint is pending, so a receiver that was down gets, once it is back, every event
in the order it happened; rounds repeat within a pass until nothing is due.

Also here: announcing overdue erasures once each (`erasure.overdue`), and pruning the
delivery log after DELIVERY_LOG_DAYS.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from crypto.errors import IntegrityError
from crypto.secrets import SecretBytes
from crypto.webhooks import sign_webhook
from vault.db.database import Database
from vault.db.sql import Queries
from vault.domain.erasures import RUNNING, is_overdue
from vault.domain.webhooks import (
    DELIVERY_LOG_DAYS,
    AttemptOutcome,
    DeliveryStatus,
    next_attempt_at,
    parse_webhook_url,
)
from vault.errors import InvalidInput, KeyDestroyed
from vault.observability import events
from vault.observability.metrics import Metrics
from vault.services.keyring import KeyRing
from vault.services.tenants import list_tenants
from vault.services.webhook_outbox import emit_erasure_overdue
from vault.services.webhook_secrets import open_secret
from vault.services.webhook_sender import AttemptResult, WebhookSender

Q = Queries("webhooks")

# Deliveries go out within seconds of their event, like the erasure executor's work.
DELIVERY_INTERVAL_SECONDS = 2.0
OVERDUE_INTERVAL_SECONDS = 60.0
PRUNE_INTERVAL_SECONDS = 3600.0
# Attempts in flight at once per worker: one slow receiver (10 s each) holds up only its
# own slot. A round claims at most ROUND_LIMIT, PER_TENANT_PER_ROUND from each tenant
# first (so one tenant's backlog cannot crowd out the others), then what is left over
# from those that have more; the last of them starts within ROUND_LIMIT /
# PARALLEL_ATTEMPTS x 10 s of its claim, far inside its lease.
PARALLEL_ATTEMPTS = 16
PER_TENANT_PER_ROUND = 8
ROUND_LIMIT = 32
LEASE_SECONDS = 120.0
# Rounds per pass, bounding a pass when deliveries keep becoming due (a long backlog).
MAX_ROUNDS = 50
_OVERDUE_BATCH = 200
# Where the next round starts in the tenant list, so a few busy tenants cannot keep the
# others waiting round after round. In memory, per process.
_rotation = 0


@dataclass(frozen=True)
class Leased:
    """A delivery this worker holds the lease of: what its attempt is recorded under."""

    tenant_id: uuid.UUID
    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID  # the webhook-id of every attempt
    failures: int  # failed attempts so far: the step of the retry schedule

    @classmethod
    def of(cls, tenant_id: uuid.UUID, row: Any) -> Leased:
        return cls(tenant_id, row["id"], row["endpoint_id"], row["event_id"], int(row["failures"]))


@dataclass(frozen=True)
class Claimed:
    delivery: Leased
    url: str
    body: bytes
    secret: SecretBytes  # masked in any repr; used for the signature only


async def deliver_due_webhooks(
    db: Database, keyring: KeyRing, sender: WebhookSender, metrics: Metrics | None = None,
    now: datetime | None = None,
) -> int:  # fmt: skip
    """Attempt every due delivery (round after round while more become due); return how
    many were delivered. `now`: the scheduling clock (tests move it through the backoff)."""
    global _rotation
    delivered = 0
    semaphore = asyncio.Semaphore(PARALLEL_ATTEMPTS)
    for _ in range(MAX_ROUNDS):
        tenants = [t.id for t in await list_tenants(db)]
        if not tenants:
            return delivered
        _rotation = (_rotation + 1) % len(tenants)
        claimed: list[Claimed] = []
        busy = []  # tenants that had as many due as they were offered: maybe more
        for tenant_id in tenants[_rotation:] + tenants[:_rotation]:
            room = min(PER_TENANT_PER_ROUND, ROUND_LIMIT - len(claimed))
            if room <= 0:
                break
            got = await _claim(db, keyring, metrics, tenant_id, now, room)
            claimed += got
            if len(got) == room:
                busy.append(tenant_id)
        for tenant_id in busy:  # the round's room left over goes to those
            room = ROUND_LIMIT - len(claimed)
            if room <= 0:
                break
            claimed += await _claim(db, keyring, metrics, tenant_id, now, room)
        if not claimed:
            break
        results = await asyncio.gather(
            *(_attempt(db, sender, metrics, item, now, semaphore) for item in claimed)
        )
        delivered += sum(results)
    return delivered


async def _claim(
    db: Database, keyring: KeyRing, metrics: Metrics | None, tenant_id: uuid.UUID,
    now: datetime | None, limit: int,
) -> list[Claimed]:  # fmt: skip
    """Lease up to `limit` due deliveries of one tenant and open their endpoints' secrets.
    One whose secret cannot be opened is recorded as a failed attempt at once."""
    claimed: list[Claimed] = []
    unsigned: list[tuple[Leased, bool]] = []
    async with db.tenant_tx(tenant_id) as conn:
        ids = await conn.fetch(
            Q.claim_due, tenant_id, now or datetime.now(UTC), LEASE_SECONDS, limit
        )
        if not ids:
            return []
        for row in await conn.fetch(Q.for_sending, tenant_id, [r["id"] for r in ids]):
            try:
                if row["secret_wrapped"] is None:
                    raise KeyDestroyed("the endpoint was deleted")
                secret = await open_secret(
                    conn, keyring, tenant_id, row["endpoint_id"], row["kek_version"],
                    row["secret_wrapped"],
                )  # fmt: skip
            except (KeyDestroyed, IntegrityError) as exc:
                # The tenant's keys are destroyed (a closed tenant), or the stored secret
                # does not open (changed or moved bytes): nothing can be signed.
                unsigned.append((Leased.of(tenant_id, row), isinstance(exc, IntegrityError)))
                continue
            leased = Leased.of(tenant_id, row)
            claimed.append(Claimed(leased, row["url"], row["body"].encode(), secret))
    for leased, damaged in unsigned:
        if damaged and metrics is not None:
            metrics.integrity_failures.labels("webhook_secret").inc()
        result = AttemptResult(AttemptOutcome.SECRET_UNAVAILABLE, None, 0)
        await _record(db, metrics, leased, result, now)
    return claimed


async def _attempt(
    db: Database, sender: WebhookSender, metrics: Metrics | None, item: Claimed,
    now: datetime | None, semaphore: asyncio.Semaphore,
) -> bool:  # fmt: skip
    async with semaphore:
        if not await _still_deliverable(db, item.delivery):
            # Its endpoint was deleted (its secret destroyed, the delivery cancelled)
            # since the claim, while this attempt waited for a slot: nothing is posted,
            # and there is no attempt to record.
            events.webhook_attempt_dropped(
                item.delivery.tenant_id, item.delivery.endpoint_id, item.delivery.delivery_id
            )
            return False
        try:
            url = parse_webhook_url(item.url, allow_private_networks=sender.allow_private_networks)
        except InvalidInput:
            # Registered while the deployment allowed http or private networks, and it no
            # longer does: never sent.
            result = AttemptResult(AttemptOutcome.DESTINATION_REFUSED, None, 0)
        else:
            # The signature's time is the wall clock's, whatever the scheduling clock says:
            # receivers check it against theirs (Standard Webhooks: within 5 minutes).
            timestamp = int(datetime.now(UTC).timestamp())
            message_id = str(item.delivery.event_id)  # the same for every attempt and replay
            headers = {
                "webhook-id": message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign_webhook(item.secret, message_id, timestamp, item.body),
            }
            result = await sender.post(url, headers, item.body)
    await _record(db, metrics, item.delivery, result, now)
    return result.outcome == AttemptOutcome.DELIVERED


async def _still_deliverable(db: Database, item: Leased) -> bool:
    """One statement per attempt, right before it is posted (workers/webhooks.py claims a
    round's secrets up to ROUND_LIMIT / PARALLEL_ATTEMPTS x 10 s ahead of their posts)."""
    async with db.tenant_tx(item.tenant_id) as conn:
        return bool(await conn.fetchval(Q.still_deliverable, item.tenant_id, item.delivery_id))


async def _record(
    db: Database, metrics: Metrics | None, item: Leased, result: AttemptResult,
    now: datetime | None,
) -> None:  # fmt: skip
    """The attempt in the delivery log, the metrics and the server log (ids only)."""
    status = await _settle(
        db, item.tenant_id, item.delivery_id, item.failures, result, now or datetime.now(UTC)
    )
    if metrics is not None:
        metrics.webhook_attempts.labels(result.outcome.value).inc()
        if status == DeliveryStatus.FAILED:
            metrics.webhook_deliveries_given_up.inc()
    events.webhook_attempt(
        item.tenant_id, item.endpoint_id, item.delivery_id, item.event_id,
        result.outcome.value, result.response_code, result.duration_ms, status.value,
    )  # fmt: skip


async def _settle(
    db: Database, tenant_id: uuid.UUID, delivery_id: uuid.UUID, failures: int,
    result: AttemptResult, now: datetime,
) -> DeliveryStatus:  # fmt: skip
    """Record the attempt and the delivery's next state in one transaction."""
    if result.outcome == AttemptOutcome.DELIVERED:
        status, failures, next_at = DeliveryStatus.DELIVERED, failures, None
    else:
        failures += 1
        next_at = next_attempt_at(failures, now)
        status = DeliveryStatus.PENDING if next_at is not None else DeliveryStatus.FAILED
    async with db.tenant_tx(tenant_id) as conn:
        await conn.execute(
            Q.insert_attempt, tenant_id, delivery_id, now, result.outcome.value,
            result.response_code, result.duration_ms,
        )  # fmt: skip
        await conn.execute(
            Q.settle_attempt, tenant_id, delivery_id, failures, status.value, next_at, now
        )
    return status


async def report_overdue_erasures(db: Database, now: datetime | None = None) -> int:
    """An `erasure.overdue` event, once, for each erasure past its due_at and not done
    (vault/domain/erasures.py `is_overdue`); returns how many were announced."""
    moment = now or datetime.now(UTC)
    reported = 0
    for tenant in await list_tenants(db):
        async with db.tenant_tx(tenant.id) as conn:
            rows = await conn.fetch(
                Q.overdue_unreported, tenant.id, moment, sorted(RUNNING), _OVERDUE_BATCH
            )
            for row in rows:
                if not is_overdue(row["status"], row["due_at"], moment):
                    continue
                await emit_erasure_overdue(
                    conn, tenant.id, row["id"], row["status"], row["due_at"], moment
                )
                await conn.execute(Q.mark_overdue_reported, tenant.id, row["id"], moment)
                reported += 1
    return reported


async def prune_delivery_log(db: Database, now: datetime | None = None) -> int:
    """Delete settled deliveries (with their attempts) and their events after
    DELIVERY_LOG_DAYS; pending ones stay whatever their age."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=DELIVERY_LOG_DAYS)
    pruned = 0
    for tenant in await list_tenants(db):
        async with db.tenant_tx(tenant.id) as conn:
            status = await conn.execute(Q.prune_deliveries, tenant.id, cutoff)
            await conn.execute(Q.prune_events, tenant.id, cutoff)
        pruned += int(status.split()[-1])
    return pruned
