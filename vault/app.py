"""The application, built by a function from settings. Nothing runs at import time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from crypto.providers import provider_from_uri
from vault.blobs.factory import open_blob_store
from vault.config import Settings
from vault.db.database import Database
from vault.domain.throttle import FailureThrottle
from vault.errors import VaultError
from vault.http import access_log, api_keys, ops, tenant
from vault.http.middleware import AccessLogMiddleware
from vault.http.problems import http_exception_handler, vault_error_handler
from vault.http.routing import route
from vault.http.state import VaultState
from vault.observability.metrics import Metrics
from vault.services.access_anchor import anchor_periodically, publish_anchors
from vault.services.access_log import AccessLogWriter
from vault.services.api_keys import ApiKeyService
from vault.services.deployment_secrets import load_deployment_secrets
from vault.services.subject_refs import SubjectRefHasher

log = structlog.get_logger("datavault.app")

ROUTES = [
    route("/healthz", GET=ops.healthz),
    route("/readyz", GET=ops.readyz),
    route("/metrics", GET=ops.metrics),
    route("/openapi.json", GET=ops.openapi_json),
    route("/docs", GET=ops.docs),
    route("/v1/tenant", GET=tenant.show_tenant),
    route("/v1/api-keys", GET=api_keys.list_api_keys, POST=api_keys.create_api_key),
    route("/v1/api-keys/{key_id}", DELETE=api_keys.revoke_api_key),
    route("/v1/access-log", GET=access_log.search_access_log),
]


def create_app(settings: Settings, database_url: str) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        db = await Database.connect(database_url, max_size=settings.db_pool_max)
        root = provider_from_uri(settings.root_key_uri, settings.data_dir)
        secrets = await load_deployment_secrets(db, root)
        writer = AccessLogWriter(db, secrets.access_log_ip_key)
        writer.start()
        blobs = open_blob_store(settings)
        anchoring = asyncio.create_task(
            anchor_periodically(db, blobs, secrets.access_log_anchor_key), name="access-log-anchor"
        )
        app.state.vault = VaultState(
            settings=settings,
            db=db,
            root=root,
            blobs=blobs,
            api_keys=ApiKeyService(db, secrets.api_key_pepper),
            access_log=writer,
            auth_throttle=FailureThrottle(
                settings.auth_failure_limit, settings.auth_failure_window_seconds
            ),
            metrics=Metrics(),
            subject_refs=SubjectRefHasher(db, root),
        )
        log.info(
            "vault_started", root_key_provider=root.name, blob_store=app.state.vault.blobs.name
        )
        try:
            yield
        finally:
            anchoring.cancel()
            await writer.stop()
            # One last anchor, so the rows of the final requests are anchored too.
            await publish_anchors(db, blobs, secrets.access_log_anchor_key)
            await blobs.close()
            await db.close()

    return Starlette(
        routes=ROUTES,
        middleware=[Middleware(AccessLogMiddleware)],
        exception_handlers={
            VaultError: vault_error_handler,
            HTTPException: http_exception_handler,
        },
        lifespan=lifespan,
    )
