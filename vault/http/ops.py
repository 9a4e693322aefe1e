"""Operations endpoints (no auth): health, readiness, metrics, API description."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from vault.http.openapi import openapi_document, render_docs_page
from vault.http.render import json_response
from vault.http.state import vault_state


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = vault_state(request)
    database, blobs = await asyncio.gather(state.db.ping(), _blob_ping(request))
    ready = database and blobs
    state.metrics.ready.set(1 if ready else 0)
    body = {
        "status": "ready" if ready else "unavailable",
        "checks": {"database": database, "blob_store": blobs},
    }
    return json_response(
        body, status=200 if ready else 503, headers=None if ready else {"Retry-After": "5"}
    )


async def _blob_ping(request: Request) -> bool:
    try:
        return await vault_state(request).blobs.ping()
    except Exception:
        return False


async def metrics(request: Request) -> Response:
    return Response(
        vault_state(request).metrics.render(),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )


async def openapi_json(request: Request) -> Response:
    return json_response(openapi_document())


async def docs(request: Request) -> Response:
    return HTMLResponse(render_docs_page(openapi_document()))
