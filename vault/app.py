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

from crypto.errors import IntegrityError, KeyUnavailableError
from vault.blobs.base import BlobStoreError
from vault.blobs.factory import open_blob_store
from vault.config import Settings
from vault.console.routes import ROUTES as CONSOLE_ROUTES
from vault.console.state import ConsoleState
from vault.db.database import Database
from vault.domain.throttle import FailureThrottle
from vault.errors import KeyNoLongerLive, VaultError
from vault.http import (
    access_log,
    api_keys,
    artefacts,
    disclosures,
    erasures,
    holds,
    ops,
    playback,
    receipts,
    records,
    subjects,
    tenant,
    webhooks,
)
from vault.http.auth import key_no_longer_live_handler
from vault.http.dispatch import IndexedRouter
from vault.http.idempotency import idempotent
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

# The JSON API, one route per path: each handler declares its operation
# (vault/http/operation.py), and /openapi.json is built from this table and those.
ROUTES = [
    *OPS_ROUTES,
    route("/openapi.json", GET=ops.openapi_json),
    route("/docs", GET=ops.docs),
    route("/v1/tenant", GET=tenant.show_tenant),
    route("/v1/tenant/settings", PATCH=tenant.patch_settings),
    route(
        "/v1/tenant/closure",
        POST=idempotent(tenant.request_closure_endpoint),
        DELETE=tenant.cancel_closure_endpoint,
    ),
    route("/v1/api-keys", GET=api_keys.list_api_keys, POST=idempotent(api_keys.create_api_key)),
    route("/v1/api-keys/{key_id}", DELETE=api_keys.revoke_api_key),
    route("/v1/access-log", GET=access_log.search_access_log),
    route(
        "/v1/subjects/{ref}/artefacts",
        GET=artefacts.list_artefacts,
        POST=idempotent(artefacts.upload_artefact, streamed_body=True),
    ),
    route(
        "/v1/subjects/{ref}/artefacts/{artefact_id}",
        GET=artefacts.show_artefact,
        DELETE=artefacts.delete_artefact,
    ),
    route(
        "/v1/subjects/{ref}/artefacts/{artefact_id}/content",
        GET=artefacts.artefact_content,
        HEAD=artefacts.artefact_content_headers,
    ),
    route(
        "/v1/subjects/{ref}/artefacts/{artefact_id}/links",
        POST=idempotent(playback.mint_playback_link),
    ),
    # A playback link's URL: the token in the path is the credential (vault/http/playback.py).
    route(f"{playback.PLAYBACK_PATH}/{{token}}", GET=playback.play, HEAD=playback.play_headers),
    route("/v1/subjects/{ref}/records", GET=records.list_records),
    route(
        "/v1/subjects/{ref}/records/{name}",
        GET=records.get_record,
        PUT=idempotent(records.put_record),
        DELETE=records.delete_record,
    ),
    route("/v1/subjects/{ref}/records/{name}/versions", GET=records.list_record_versions),
    route("/v1/subjects/{ref}/records/{name}/versions/{version}", GET=records.get_record_version),
    route("/v1/subjects/{ref}/export", GET=subjects.export_subject),
    route(
        "/v1/subjects/{ref}/restriction",
        POST=subjects.restrict_subject,
        DELETE=subjects.lift_restriction,
    ),
    route("/v1/subjects/{ref}", GET=subjects.show_subject),
    route("/v1/subjects/{ref}/erasure", POST=idempotent(erasures.request_erasure)),
    route("/v1/erasures", GET=erasures.list_erasures),
    route("/v1/erasures/{erasure_id}", GET=erasures.show_erasure),
    route("/v1/erasures/{erasure_id}/cancel", POST=erasures.cancel_erasure),
    route("/v1/erasures/{erasure_id}/release-brake", POST=erasures.release_erasure_brake),
    route("/v1/erasures/{erasure_id}/receipt", GET=erasures.erasure_receipt),
    route("/v1/holds", GET=holds.list_holds, POST=idempotent(holds.place_hold)),
    route("/v1/holds/{hold_id}", GET=holds.show_hold, PATCH=holds.amend_hold),
    route(
        "/v1/holds/{hold_id}/release",
        POST=holds.release_hold,
        DELETE=holds.withdraw_hold_release,
    ),
    route("/v1/holds/{hold_id}/impact", GET=holds.hold_impact),
    route(
        "/v1/disclosures",
        GET=disclosures.list_disclosures,
        POST=idempotent(disclosures.record_disclosure),
    ),
    route("/v1/disclosures/{disclosure_id}", GET=disclosures.show_disclosure),
    route("/v1/receipt-keys", GET=receipts.receipt_keys),
    # The same key set where JOSE tooling looks for it (RFC 8615), under the receipts'
    # `issuer`.
    route("/.well-known/jwks.json", GET=receipts.jwks),
    route("/v1/webhooks", GET=webhooks.list_webhooks, POST=idempotent(webhooks.create_webhook)),
    route("/v1/webhooks/{webhook_id}", GET=webhooks.show_webhook, DELETE=webhooks.delete_webhook),
    route("/v1/webhooks/{webhook_id}/test", POST=webhooks.test_webhook),
    route("/v1/webhooks/{webhook_id}/deliveries", GET=webhooks.list_deliveries),
    route(
        "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry",
        POST=webhooks.retry_delivery,
    ),
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
        routes=[*ROUTES, *CONSOLE_ROUTES] if serve_api else OPS_ROUTES,
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
