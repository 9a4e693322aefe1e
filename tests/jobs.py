"""The vault's background jobs run by hand, with a moved clock: tests drive time instead
of waiting for the jobs' intervals. One place, so every test runs the same pass."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

import workers.ledger as ledger_module
from tests.api.helpers import auth, subject_url
from tests.support import ServerThread, after_tenant_fetch
from vault.db.database import Database
from vault.observability.metrics import Metrics
from vault.runtime import operator_context
from vault.services.erasure_receipts import ReceiptIssuer
from vault.services.keyring import SubjectKeysToDestroy
from vault.services.ledger_watermark import watermark_for
from vault.services.webhook_sender import WebhookSender
from workers.access_anchor import publish_anchors
from workers.closure import run_due_closures
from workers.deletion_check import Violation, find_deletion_violations
from workers.erasure import run_due_erasures
from workers.ledger import E as ledger_queries
from workers.ledger import complete_published_erasures, publish_and_complete
from workers.retention import apply_retention
from workers.webhooks import deliver_due_webhooks, report_overdue_erasures


async def worker_pass(server: ServerThread, *, days: float = 0) -> None:
    """One pass of what decides deletion, `days` ahead of now: the erasure executor
    (due instructions, held ones re-checked), retention, then the shred-ledger publisher,
    which completes erasures (or holds them) with their receipts."""
    async with operator_context(server.settings, server.database_url) as ctx:
        now = datetime.now(UTC) + timedelta(days=days)
        issuer = await ReceiptIssuer.for_deployment(ctx.db, ctx.root, ctx.settings)
        await run_due_erasures(ctx.db, ctx.keyring, now)
        await apply_retention(ctx.db, ctx.keyring, now)
        await publish_and_complete(ctx.db, ctx.blobs, issuer, watermark_for(ctx.root, ctx.blobs))


def run_worker_pass(server: ServerThread, *, days: float = 0) -> None:
    asyncio.run(worker_pass(server, days=days))


def erase_and_run_worker(
    server: ServerThread, http: httpx.Client, privacy: dict[str, Any], ref: str, *,
    until: Collection[str] = ("held", "completed"), seconds: float = 0,
    deadline: float | None = None,
) -> tuple[str, float]:  # fmt: skip
    """Request the subject's erasure (`privacy`: a key with the erasure scope) and run
    worker passes, a tenth of a second apart, until its status is one of `until` or time
    is up: `seconds` after the request was answered, or the monotonic `deadline` where one
    is given. Returns its last status and how long that took since the request."""
    erasure = http.post(subject_url(ref, "erasure"), headers=auth(privacy))
    assert erasure.status_code == 202, erasure.text
    url = f"/v1/erasures/{erasure.json()['id']}"
    started = time.monotonic()
    end = started + seconds if deadline is None else deadline
    status = ""
    while time.monotonic() < end:
        run_worker_pass(server)
        status = str(http.get(url, headers=auth(privacy)).json()["status"])
        if status in until:
            break
        time.sleep(0.1)
    return status, time.monotonic() - started


async def completion_racing_the_barrier(
    db: Database, meanwhile: Callable[[], Awaitable[None]], *, seconds: float = 5.0
) -> bool:
    """One pass of erasure completion (the publisher's `complete_published_erasures`, one
    tenant task at a time, so a hold `meanwhile` leaves open stays open through the pass)
    in which `meanwhile` runs right after the first transfer barrier's statement
    (`after_tenant_fetch`): what commits between the barrier and completion's look. Returns
    whether the pass was still waiting after `seconds` (at a barrier behind that hold).
    Fails if the pass never took the barrier."""
    parallel = ledger_module._COMPLETE_PARALLEL
    ledger_module._COMPLETE_PARALLEL = 1
    try:
        with after_tenant_fetch(ledger_queries.transfer_barrier, meanwhile) as barrier:
            try:
                await asyncio.wait_for(complete_published_erasures(db), seconds)
                timed_out = False
            except TimeoutError:
                timed_out = True
    finally:
        ledger_module._COMPLETE_PARALLEL = parallel
    assert barrier.is_set(), "the publisher never took the barrier"
    return timed_out


async def anchor_pass(server: ServerThread) -> int:
    """One round of the access-log anchor job (every chain's next signed anchor in the
    blob store), waiting for a round another process may be running."""
    async with operator_context(server.settings, server.database_url) as ctx:
        return await publish_anchors(
            ctx.db, ctx.blobs, ctx.secrets.anchor_keys, wait=True,
            retain_days=ctx.settings.backup_retention_days,
        )  # fmt: skip


def run_anchor_pass(server: ServerThread) -> int:
    return asyncio.run(anchor_pass(server))


def expire_hold(database_url: str, hold_id: str) -> None:
    """A hold's expiry time arrives: whether a hold is in force is the database's clock
    against `expires_at` (dv_hold_in_force), so as the owner move `expires_at` to just
    past instead of waiting for it."""

    async def run() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "UPDATE holds SET expires_at = now() - interval '1 second' WHERE id = $1",
                uuid.UUID(hold_id),
            )
        finally:
            await conn.close()

    asyncio.run(run())


def deletion_violations(
    server: ServerThread, *, grace: timedelta = timedelta(0), days: float = 0
) -> list[Violation]:
    """`datavault check deletion` as of `days` ahead, with `grace` for the jobs."""
    now = datetime.now(UTC) + timedelta(days=days)
    return asyncio.run(find_deletion_violations(server.database_url, grace=grace, now=now))


async def webhook_pass(
    server: ServerThread, *, days: float = 0, sender: WebhookSender | None = None,
    metrics: Metrics | None = None, overdue: bool = False,
) -> int:  # fmt: skip
    """One pass of the webhook delivery job, `days` ahead of now (the scheduling clock:
    backoff is driven by moving it, never by waiting); first the overdue announcement
    when `overdue`. `sender`: by default the deployment's own (its private-network
    setting, the system resolver, a 10 s timeout). Returns how many were delivered."""
    now = datetime.now(UTC) + timedelta(days=days)
    sender = sender or WebhookSender(
        allow_private_networks=server.settings.webhook_allow_private_networks
    )
    async with operator_context(server.settings, server.database_url) as ctx:
        if overdue:
            await report_overdue_erasures(ctx.db, now)
        return await deliver_due_webhooks(ctx.db, ctx.keyring, sender, metrics, now)


def run_webhook_pass(
    server: ServerThread, *, days: float = 0, sender: WebhookSender | None = None,
    metrics: Metrics | None = None, overdue: bool = False,
) -> int:  # fmt: skip
    return asyncio.run(
        webhook_pass(server, days=days, sender=sender, metrics=metrics, overdue=overdue)
    )


class OneAskAtATime:
    """A key ring whose batch destroy (`destroy_many_subject_keys`, one statement in the
    vault) sends its asks one at a time through `destroy_subject_keys`, in order, in the
    same transaction: the seam a staged attack overrides to pause between two asks of a
    batch, or to fail one. That the single statement reads holds and locks afresh for
    each ask as these separate ones do is tested on the statement itself
    (tests/api/test_redteam7_batches.py, the hold placed while the statement waits)."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def destroy_subject_keys(self, *args: Any, **kwargs: Any) -> Any:
        return await self._real.destroy_subject_keys(*args, **kwargs)

    async def destroy_many_subject_keys(
        self, conn: Any, tenant_id: uuid.UUID, asks: Sequence[SubjectKeysToDestroy]
    ) -> list[Any]:
        outcomes = []
        for ask in asks:
            destroyed = await self.destroy_subject_keys(
                conn, tenant_id, ask.subject_id, ask.generation, ask.categories,
                erasure_id=ask.erasure_id,
            )  # fmt: skip
            outcomes.append(destroyed)
        return outcomes


def close_due_tenants(server: ServerThread, *, days: float = 61) -> int:
    """One closure pass as of `days` ahead (past the 60-day closure delay): how many
    tenants it closed for good."""

    async def run() -> int:
        async with operator_context(server.settings, server.database_url) as ctx:
            now = datetime.now(UTC) + timedelta(days=days)
            return await run_due_closures(ctx.db, ctx.keyring, now=now)

    return asyncio.run(run())
