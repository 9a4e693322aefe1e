"""The application, built by a function from settings. Nothing runs at import time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from crypto.errors import IntegrityError, KeyUnavailableError
from vault.blobs.base import BlobStoreError
from vault.blobs.factory import open_blob_store
from vault.config import Settings
from vault.console.state import ConsoleState
from vault.db.database import Database
from vault.domain.throttle import FailureThrottle
from vault.errors import KeyNoLongerLive, VaultError
from vault.http import ops
from vault.http.auth import key_no_longer_live_handler
from vault.http.dispatch import IndexedRouter
from vault.http.middleware import AccessLogMiddleware
from vault.http.problems import (
    blob_store_error_handler,
    http_exception_handler,
    integrity_error_handler,
    key_unavailable_handler,
    lock_conflict_handler,
    vault_error_handler,
)
from vault.http.routing import route
from vault.http.state import VaultState
from vault.http.subject_path import SubjectPathMiddleware
from vault.http.transfers import TransferWatchMiddleware
from vault.observability.metrics import Metrics
from vault.runtime import open_root_key
from vault.services.access_log import AccessLogWriter
from vault.services.api_keys import ApiKeyService
from vault.services.artefacts import ArtefactService
from vault.services.console_sessions import SessionStore
from vault.services.deployment_secrets import load_deployment_secrets
from vault.services.disclosures import DisclosureService
from vault.services.erasure_receipts import ReceiptIssuer
from vault.services.erasures import ErasureService
from vault.services.export import ExportService
from vault.services.holds import (
    HoldService,
    PgHoldCheck,
)
from vault.services.kek_invalidation import KekInvalidationListener
from vault.services.keyring import KeyRing
from vault.services.ledger import (
    reconcile_on_start,
)
from vault.services.ledger_inline import InlineLedger
from vault.services.ledger_watermark import watermark_for
from vault.services.playback_links import PlaybackLinkService
from vault.services.records import RecordService
from vault.services.root_epochs import sync_root_epochs
from vault.services.subject_refs import SubjectRefHasher
from vault.services.subject_status import SubjectStatusService
from vault.services.subjects import SubjectService
from vault.services.transfer_releases import TransferReleaser
from vault.services.wakeups import CHANNELS, WakeupListener, WakeupSender
from vault.services.webhook_sender import resolve_host
from vault.services.webhooks import WebhookService
from workers.access_anchor import AnchorMemory, publish_anchors
from workers.jobs import background_jobs, kek_eviction_job, monitor_job, root_epochs_job
from workers.ledger import publish_pending
from workers.runner import JobRunner

log = structlog.get_logger("datavault.app")

# What `datavault worker` serves: probes and metrics, no data.
OPS_ROUTES = [
    route("/healthz", GET=ops.healthz),
    route("/readyz", GET=ops.readyz),
    route("/metrics", GET=ops.metrics),
]


def create_app(
    settings: Settings, database_url: str, *, run_jobs: bool = True, serve_api: bool = True
) -> Starlette:
    """`serve`: API and jobs; `api`: run_jobs=False; `worker`: serve_api=False."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        db = await Database.connect(database_url, max_size=settings.db_pool_max)
        root = open_root_key(settings)
        await sync_root_epochs(db, root)
        secrets = await load_deployment_secrets(db, root)
        writer = AccessLogWriter(db, secrets.access_log_ip_key)
        writer.start()
        transfer_releases = TransferReleaser(db)
        transfer_releases.start()
        blobs = open_blob_store(settings)
        keyring = KeyRing(root, PgHoldCheck())
        # Before serving: a restored backup must not bring shredded keys back.
        redestroyed = await reconcile_on_start(db, blobs, watermark_for(root, blobs), keyring)
        if redestroyed:
            log.warning("shredded_keys_redestroyed", count=redestroyed)
        issuer = await ReceiptIssuer.for_deployment(db, root, settings)
        # Then a ledger without a signed object gets its first (the marker), so from
        # here on an unsigned object is refused: not before the replay above, which must
        # see the objects after the database's head before the publisher adopts them.
        await publish_pending(
            db, blobs, settings.backup_retention_days, watermark_for(root, blobs),
            signer=issuer.signer,
        )  # fmt: skip
        kek_listener = KekInvalidationListener(database_url, keyring.keks)
        kek_listener.start()
        refs = SubjectRefHasher(db, root)
        subject_service = SubjectService(keyring, refs)
        metrics = Metrics()
        artefact_service = ArtefactService(
            db, blobs, keyring, subject_service, settings.max_artefact_bytes, metrics
        )
        disclosure_service = DisclosureService(db, keyring)
        auth_throttle = FailureThrottle(
            settings.auth_failure_limit, settings.auth_failure_window_seconds
        )
        metrics.watch_auth_throttle(
            auth_throttle, settings.auth_failure_limit, settings.auth_failure_window_seconds
        )
        # Controls (holds, cancellations, revocations, closures, restrictions, retention,
        # console sign-outs, webhook deletions) publish their shred-ledger entry before they
        # answer.
        inline_ledger = InlineLedger(
            lambda: publish_pending(
                db,
                blobs,
                settings.backup_retention_days,
                watermark_for(root, blobs),
                signer=issuer.signer,
            )
        )
        # Erasure requests' wake-ups for the executor, sent after they commit.
        erasure_wakeups = WakeupSender(db)
        app.state.vault = VaultState(
            settings=settings,
            db=db,
            root=root,
            blobs=blobs,
            api_keys=ApiKeyService(db, secrets.api_key_pepper),
            access_log=writer,
            transfer_releases=transfer_releases,
            auth_throttle=auth_throttle,
            metrics=metrics,
            subject_refs=refs,
            keyring=keyring,
            subjects=subject_service,
            subject_status=SubjectStatusService(db, subject_service, inline_ledger),
            artefacts=artefact_service,
            records=RecordService(db, keyring, subject_service),
            export=ExportService(
                db, keyring, subject_service, artefact_service, disclosure_service
            ),
            holds=HoldService(db, inline_ledger),
            ledger=inline_ledger,
            erasures=ErasureService(db, refs, erasure_wakeups),
            playback=PlaybackLinkService(db, artefact_service),
            disclosures=disclosure_service,
            webhooks=WebhookService(
                db,
                keyring,
                resolve_host,
                allow_private_networks=settings.webhook_allow_private_networks,
            ),
        )
        app.state.console = ConsoleState(
            SessionStore(db, ledger=inline_ledger), secrets.anchor_keys
        )
        # `datavault api` serves only; `serve` and `worker` run the background jobs.
        anchors = AnchorMemory()  # the anchor job's, and the last anchoring's on shutdown
        # The erasure executor and the ledger publisher run when the work is committed.
        wakeups = {channel: asyncio.Event() for channel in CHANNELS}
        wakeup_listener = WakeupListener(database_url, wakeups) if run_jobs else None
        if wakeup_listener is not None:
            wakeup_listener.start()
        jobs = JobRunner(
            [
                monitor_job(db, metrics),
                kek_eviction_job(keyring),
                root_epochs_job(db, root),
                *(
                    background_jobs(
                        db,
                        blobs,
                        keyring,
                        issuer,
                        secrets.anchor_keys,
                        root,
                        settings,
                        metrics,
                        anchors,
                        wakeups,
                    )
                    if run_jobs
                    else []
                ),
            ],
            metrics,
        )
        jobs.start()
        log.info(
            "vault_started", root_key_provider=root.name, blob_store=app.state.vault.blobs.name
        )
        if settings.public_url_unusable:
            log.warning(
                "public_url_unset",
                public_url=settings.public_base_url,
                detail="receipts' issuer and playback links name this address: set "
                "DATAVAULT_PUBLIC_URL to where clients reach the vault",
            )
        try:
            yield
        finally:
            try:
                await erasure_wakeups.flush()
                await jobs.stop()
                if wakeup_listener is not None:
                    await wakeup_listener.stop()
                await kek_listener.stop()
                await writer.stop()
                await transfer_releases.stop()
                # One last anchor, so the rows of the final requests are anchored too.
                await publish_anchors(
                    db,
                    blobs,
                    secrets.anchor_keys,
                    memory=anchors,
                    wait=True,
                    retain_days=settings.backup_retention_days,
                )
            except Exception as exc:
                # The store or database is down: the next start anchors the chains.
                log.warning("final_anchor_failed", error_type=type(exc).__name__)
            finally:
                await blobs.close()
                await db.close()

    app = Starlette(
        # ROUTES is the JSON API that /openapi.json describes; the console's HTML pages
        # are served beside it and kept out of that document. A worker serves neither.
        routes=_api_and_console_routes() if serve_api else OPS_ROUTES,
        # Access log outermost: it records what the transfer watchdog cut as well.
        middleware=[
            Middleware(AccessLogMiddleware),
            Middleware(TransferWatchMiddleware),
            Middleware(SubjectPathMiddleware),
        ],
        exception_handlers={
            KeyNoLongerLive: key_no_longer_live_handler,
            VaultError: vault_error_handler,
            HTTPException: http_exception_handler,
            IntegrityError: integrity_error_handler,
            KeyUnavailableError: key_unavailable_handler,
            BlobStoreError: blob_store_error_handler,
            asyncpg.TransactionRollbackError: lock_conflict_handler,
        },
        lifespan=lifespan,
    )
    # The same table, each request trying only the routes its path could match
    # (vault/http/dispatch.py): a record request tried 18 patterns, now 1 or 2.
    app.router = IndexedRouter(app.router.routes, lifespan=lifespan)
    return app


def _api_and_console_routes() -> list[BaseRoute]:
    # Imported here, not at the top: the handlers, the console and its templates (jinja2)
    # cost a `datavault worker`, which serves only OPS_ROUTES, ~0.07 s of CPU at each start.
    from vault.api_routes import ROUTES
    from vault.console.routes import ROUTES as CONSOLE_ROUTES

    return [*ROUTES, *CONSOLE_ROUTES]
