"""RFC 9457 problem+json: the one table from error type to HTTP status and problem type."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from vault import errors
from vault.http.models.common import Problem
from vault.observability.integrity import integrity_failed

log = structlog.get_logger()

PROBLEM_BASE = "https://datavault.dev/problems/"
MEDIA_TYPE = "application/problem+json"
# What every answer the vault renders says to caches unless its endpoint says otherwise.
NO_STORE = "private, no-store"

# error type -> (status, problem slug)
STATUS: dict[type[errors.VaultError], tuple[int, str]] = {
    errors.MalformedInput: (400, "malformed-request"),
    errors.Unauthenticated: (401, "unauthenticated"),
    errors.Forbidden: (403, "forbidden"),
    errors.Restricted: (403, "restricted"),
    errors.NotFound: (404, "not-found"),
    errors.Gone: (410, "gone"),
    errors.TimedOut: (408, "request-timeout"),
    errors.Conflict: (409, "conflict"),
    errors.RestrictedDeletion: (409, "restricted"),
    errors.TooLarge: (413, "too-large"),
    errors.UnsupportedMediaType: (415, "unsupported-media-type"),
    errors.InvalidInput: (422, "invalid-input"),
    errors.Throttled: (429, "throttled"),
    errors.Unavailable: (503, "unavailable"),
    errors.BlobMissing: (500, "blob-missing"),
}

_HTTP_SLUGS = {404: "not-found", 405: "method-not-allowed", 400: "malformed-request"}


class ProblemResponse(Response):
    media_type = MEDIA_TYPE
    model_type = Problem  # the shape of its body (vault/http/operation.py checks answers)

    def __init__(
        self, status: int, slug: str, detail: str, request_id: str | None,
        headers: dict[str, str] | None = None, **extra: Any,
    ) -> None:  # fmt: skip
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + slug,
            "title": HTTPStatus(status).phrase,
            "status": status,
            "detail": detail or HTTPStatus(status).description,
            "request_id": request_id,
        }
        body.update(extra)
        super().__init__(json.dumps(body).encode(), status_code=status, headers=headers)
        # A refusal can quote what it refused (a record's name, a category), and a 404 or
        # 410 may be kept by a cache by default: kept by none (red team 22).
        self.headers.setdefault("cache-control", NO_STORE)


def _request_id(request: Request) -> str | None:
    request_id: str | None = request.scope.get("state", {}).get("request_id")
    return request_id


def _status_and_slug(exc: errors.VaultError) -> tuple[int, str]:
    return next((STATUS[cls] for cls in type(exc).__mro__ if cls in STATUS), (500, "internal"))


def status_for(exc: errors.VaultError) -> int:
    return _status_and_slug(exc)[0]


def problem_for(exc: errors.VaultError, request_id: str | None) -> ProblemResponse:
    status, slug = _status_and_slug(exc)
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="datavault"'
    extra = {k: v for k, v in exc.extra.items() if k != "retry_after"}
    return ProblemResponse(status, slug, exc.detail, request_id, headers=headers, **extra)


async def vault_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.VaultError)
    return problem_for(exc, _request_id(request))


async def integrity_error_handler(request: Request, exc: Exception) -> Response:
    """Stored data failed authentication (corrupted or swapped ciphertext). Never altered
    plaintext; the same answer whichever check failed."""
    vault = getattr(request.app.state, "vault", None)
    # Counted here unless it was where it was found (vault/observability/integrity.py).
    integrity_failed(
        vault.metrics if vault is not None else None, exc, "ciphertext",
        request_id=_request_id(request),
    )  # fmt: skip
    return ProblemResponse(
        500, "integrity", "stored data failed its integrity check", _request_id(request)
    )


async def blob_store_error_handler(request: Request, exc: Exception) -> Response:
    """The blob store failed or is unreachable: retry later. (A blob missing behind a live
    row is errors.BlobMissing, 500 without Retry-After: services/artefacts.py.)"""
    return ProblemResponse(
        503, "unavailable", "the blob store is unavailable", _request_id(request),
        headers={"Retry-After": "5"},
    )  # fmt: skip


async def lock_conflict_handler(request: Request, exc: Exception) -> Response:
    """PostgreSQL broke a lock cycle (or a serialization conflict) by aborting this
    request's transaction: nothing of it was committed, and the same request sent again
    normally goes through. Logged, since a cycle that recurs is a lock order to mend."""
    log.warning(
        "database_lock_conflict", error_type=type(exc).__name__,
        request_id=_request_id(request),
    )  # fmt: skip
    return ProblemResponse(
        503, "unavailable", "a concurrent change got in the way; try again",
        _request_id(request), headers={"Retry-After": "1"},
    )  # fmt: skip


async def key_unavailable_handler(request: Request, exc: Exception) -> Response:
    return ProblemResponse(
        503, "unavailable", "the key service is unavailable", _request_id(request),
        headers={"Retry-After": "5"},
    )  # fmt: skip


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    slug = _HTTP_SLUGS.get(exc.status_code, "error")
    detail = exc.detail if exc.status_code != 404 else "no such resource"
    return ProblemResponse(
        exc.status_code, slug, str(detail), _request_id(request), headers=dict(exc.headers or {})
    )


def internal_error(request_id: str) -> ProblemResponse:
    # Nothing about the failure reaches the client; the log line has the error type.
    return ProblemResponse(500, "internal", "internal error", request_id)
