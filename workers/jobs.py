"""The background jobs of a vault deployment, in one list for `serve` and `worker`."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from crypto.providers.base import RootKeyProvider
from vault.blobs.base import BlobStore
from vault.config import Settings
from vault.db.database import Database
from vault.observability.metrics import Metrics
from vault.services.access_anchor import ANCHOR_INTERVAL_SECONDS, AnchorKeys
from vault.services.erasure_receipts import ReceiptIssuer
from vault.services.keyring import KeyRing
from vault.services.ledger_watermark import watermark_for
from vault.services.root_epochs import EPOCH_REFRESH_SECONDS, sync_root_epochs
from vault.services.wakeups import ERASURES_DUE, LEDGER_PENDING
from vault.services.webhook_sender import WebhookSender
from workers.access_anchor import AnchorMemory, publish_anchors
from workers.access_log_ips import IP_RETENTION_INTERVAL_SECONDS, age_access_log_ips
from workers.closure import CLOSURE_INTERVAL_SECONDS, run_due_closures
from workers.deletion_check import CHECK_INTERVAL_SECONDS, run_scheduled_check
from workers.epochs import EPOCH_SCHEDULE_INTERVAL_SECONDS, EpochSchedule, run_epoch_schedule
from workers.erasure import EXECUTOR_INTERVAL_SECONDS, run_due_erasures
from workers.hold_expiry import HOLD_EXPIRY_INTERVAL_SECONDS, journal_expired_holds
from workers.idempotency import IDEMPOTENCY_EXPIRY_INTERVAL_SECONDS, expire_idempotency_keys
from workers.ledger import PUBLISH_INTERVAL_SECONDS, publish_and_complete
from workers.ledger_compaction import LEDGER_COMPACTION_INTERVAL_SECONDS, compact_on_schedule
from workers.monitor import MONITOR_INTERVAL_SECONDS, refresh_gauges
from workers.retention import RETENTION_INTERVAL_SECONDS, apply_retention
from workers.runner import PeriodicJob
from workers.sweeper import SWEEP_INTERVAL_SECONDS, sweep
from workers.webhooks import (
    DELIVERY_INTERVAL_SECONDS,
    OVERDUE_INTERVAL_SECONDS,
    PRUNE_INTERVAL_SECONDS,
    deliver_due_webhooks,
    prune_delivery_log,
    report_overdue_erasures,
)


def background_jobs(
    db: Database,
    blobs: BlobStore,
    keyring: KeyRing,
    issuer: ReceiptIssuer,
    anchor_keys: AnchorKeys,
    root: RootKeyProvider,
    settings: Settings,
    metrics: Metrics,
    anchors: AnchorMemory | None = None,
    wakeups: Mapping[str, asyncio.Event] | None = None,
) -> list[PeriodicJob]:
    """`anchors`: the anchor publisher's memory, shared with the anchoring on shutdown.
    `wakeups`: events by channel (vault/services/wakeups.py) that run the erasure
    executor and the shred-ledger publisher at once; they poll on their interval too."""
    anchors = anchors if anchors is not None else AnchorMemory()
    wakeups = wakeups or {}
    schedule = EpochSchedule(settings.epoch_days, settings.backup_retention_days)
    watermark = watermark_for(root, blobs)
    sender = WebhookSender(allow_private_networks=settings.webhook_allow_private_networks)
    return [
        PeriodicJob("retention", RETENTION_INTERVAL_SECONDS, lambda: apply_retention(db, keyring)),
        PeriodicJob(
            "tenant-closure", CLOSURE_INTERVAL_SECONDS, lambda: run_due_closures(db, keyring)
        ),
        PeriodicJob(
            "access-log-anchor",
            ANCHOR_INTERVAL_SECONDS,
            lambda: publish_anchors(
                db,
                blobs,
                anchor_keys,
                memory=anchors,
                retain_days=settings.backup_retention_days,
                on_refused=lambda _: metrics.integrity_failures.labels("access_log_anchor").inc(),
            ),
        ),
        PeriodicJob(
            "access-log-ip-retention",
            IP_RETENTION_INTERVAL_SECONDS,
            lambda: age_access_log_ips(
                db, settings.access_log_ip_full_days, settings.access_log_ip_keep_days
            ),
        ),
        PeriodicJob("blob-sweeper", SWEEP_INTERVAL_SECONDS, lambda: sweep(db, blobs, keyring)),
        PeriodicJob("hold-expiry", HOLD_EXPIRY_INTERVAL_SECONDS, lambda: journal_expired_holds(db)),
        PeriodicJob(
            "idempotency-expiry",
            IDEMPOTENCY_EXPIRY_INTERVAL_SECONDS,
            lambda: expire_idempotency_keys(db),
        ),
        PeriodicJob(
            "erasure-executor",
            settings.erasure_poll_seconds or EXECUTOR_INTERVAL_SECONDS,
            lambda: run_due_erasures(db, keyring),
            wakeups.get(ERASURES_DUE),
        ),
        PeriodicJob(
            "shred-ledger",
            settings.erasure_poll_seconds or PUBLISH_INTERVAL_SECONDS,
            lambda: publish_and_complete(db, blobs, issuer, watermark),
            wakeups.get(LEDGER_PENDING),
        ),
        PeriodicJob(
            "ledger-compaction",
            LEDGER_COMPACTION_INTERVAL_SECONDS,
            lambda: compact_on_schedule(db, blobs, issuer, watermark, metrics),
        ),
        PeriodicJob(
            "deletion-check", CHECK_INTERVAL_SECONDS, lambda: run_scheduled_check(db, metrics)
        ),
        PeriodicJob(
            "webhook-delivery",
            DELIVERY_INTERVAL_SECONDS,
            lambda: deliver_due_webhooks(db, keyring, sender, metrics),
        ),
        PeriodicJob(
            "webhook-overdue-erasures",
            OVERDUE_INTERVAL_SECONDS,
            lambda: report_overdue_erasures(db),
        ),
        PeriodicJob("webhook-log-prune", PRUNE_INTERVAL_SECONDS, lambda: prune_delivery_log(db)),
        PeriodicJob(
            "root-epoch-schedule",
            EPOCH_SCHEDULE_INTERVAL_SECONDS,
            lambda: run_epoch_schedule(db, keyring, root, schedule),
        ),
    ]


def monitor_job(db: Database, metrics: Metrics) -> PeriodicJob:
    """The gauges /metrics exposes; every API process runs it (a cheap read), so the
    erasure alerts work whichever process Prometheus scrapes."""
    return PeriodicJob(
        "overdue-monitor", MONITOR_INTERVAL_SECONDS, lambda: refresh_gauges(db, metrics)
    )


KEK_EVICTION_INTERVAL_SECONDS = 10.0


def kek_eviction_job(keyring: KeyRing) -> PeriodicJob:
    """Every process: expired tenant KEKs leave memory within seconds of their 60 s, even
    in a process that serves nothing of that tenant any more."""

    async def evict() -> None:
        keyring.keks.evict_expired()

    return PeriodicJob("kek-cache-eviction", KEK_EVICTION_INTERVAL_SECONDS, evict)


def root_epochs_job(db: Database, root: RootKeyProvider) -> PeriodicJob:
    """Every process re-reads the root-key epoch list, so an epoch started or retired by
    `datavault keys` (aws-kms: a new or deleted KMS key) reaches it within seconds."""
    return PeriodicJob("root-epochs", EPOCH_REFRESH_SECONDS, lambda: sync_root_epochs(db, root))
