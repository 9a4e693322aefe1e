"""Operations endpoints (no auth): health, readiness, metrics, API description."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from vault.http.models.operations import Health, Readiness, ReadinessChecks
from vault.http.openapi import openapi_json_bytes, render_docs_page
from vault.http.operation import JSON, Answer, Tag, ok, operation, render
from vault.http.state import vault_state


@operation(
    "getHealth", tag=Tag.OPERATIONS, summary="Process is up", scope=None,
    answers={200: ok(Health)},
)  # fmt: skip
async def healthz(request: Request) -> Response:
    return render(Health("ok"))


@operation(
    "getReadiness", tag=Tag.OPERATIONS, summary="Database and blob store reachable",
    scope=None,
    answers={
        200: Answer("Ready", Readiness),
        503: Answer("Not ready: which check failed (with Retry-After)", Readiness),
    },
)  # fmt: skip
async def readyz(request: Request) -> Response:
    state = vault_state(request)
    database, blobs = await asyncio.gather(state.db.ping(), _blob_ping(request))
    ready = database and blobs
    state.metrics.ready.set(1 if ready else 0)
    body = Readiness("ready" if ready else "unavailable", ReadinessChecks(database, blobs))
    return render(
        body, status=200 if ready else 503, headers=None if ready else {"Retry-After": "5"}
    )


async def _blob_ping(request: Request) -> bool:
    try:
        return await vault_state(request).blobs.ping()
    except Exception:
        return False


@operation(
    "getMetrics", tag=Tag.OPERATIONS, summary="Prometheus metrics", scope=None,
    answers={200: Answer("The Prometheus text format", media="text/plain",
                         schema={"type": "string"})},
)  # fmt: skip
async def metrics(request: Request) -> Response:
    return Response(
        vault_state(request).metrics.render(),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )


@operation(
    "getOpenApiDocument", tag=Tag.OPERATIONS, summary="This document (OpenAPI 3.1)",
    scope=None, answers={200: Answer("The OpenAPI document", media=JSON,
                                     schema={"type": "object"})},
)  # fmt: skip
async def openapi_json(request: Request) -> Response:
    # Built once per app: the routes and their declarations do not change while it runs.
    document: bytes | None = getattr(request.app.state, "openapi_json", None)
    if document is None:
        document = openapi_json_bytes(request.app.routes)
        request.app.state.openapi_json = document
    return Response(document, media_type=JSON)


@operation(
    "getApiDocs", tag=Tag.OPERATIONS, summary="Human-readable API documentation", scope=None,
    answers={200: Answer("An HTML page", media="text/html", schema={"type": "string"})},
)  # fmt: skip
async def docs(request: Request) -> Response:
    page: str | None = getattr(request.app.state, "docs_page", None)
    if page is None:
        page = render_docs_page(request.app.routes)
        request.app.state.docs_page = page
    return HTMLResponse(page)
