"""Everything the client raises derives from `DatavaultError`.

An answer the vault gave as RFC 9457 problem+json becomes a `ProblemError` subclass chosen
by status (and, where one status means two things, by problem type), carrying the
problem's `type`, `title`, `status`, `detail`, `request_id` and field `errors`. Messages
name the operation by its route template (`GET /v1/subjects/{ref}`), never the path
itself: a subject reference, an API key or a playback token is never in an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

PROBLEM_BASE = "https://datavault.dev/problems/"


class DatavaultError(Exception):
    """Base of every error this client raises."""


@dataclass(frozen=True)
class FieldError:
    """One entry of a validation problem's `errors`: which field, and what is wrong."""

    field: str
    message: str


class ProblemError(DatavaultError):
    """The vault answered with an error status (problem+json, RFC 9457)."""

    def __init__(
        self,
        *,
        status: int,
        type: str,
        title: str,
        detail: str,
        operation: str,
        request_id: str | None = None,
        errors: tuple[FieldError, ...] = (),
        extra: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.operation = operation
        self.request_id = request_id
        self.errors = errors
        # Further members of the problem (e.g. `holds` on a 409 for held data).
        self.extra: Mapping[str, Any] = dict(extra or {})
        self.retry_after = retry_after
        message = f"{operation}: {status} {title}: {detail}"
        if request_id:
            message += f" (request {request_id})"
        super().__init__(message)

    @property
    def slug(self) -> str:
        """The problem type's last part (`not-found`, `restricted`, …)."""
        return self.type.removeprefix(PROBLEM_BASE)


class BadRequest(ProblemError):
    """400: the request was malformed (not JSON, a bad header)."""


class Unauthenticated(ProblemError):
    """401: no API key, or a wrong, revoked or expired one."""


class Forbidden(ProblemError):
    """403: the key lacks the scope the operation needs."""


class Restricted(Forbidden):
    """403 `…/restricted`: the data is restricted or kept under hold; only the compliance
    scope reads it."""


class NotFound(ProblemError):
    """404: no such thing in this tenant (another tenant's ids look the same)."""


class Gone(NotFound):
    """410: it existed and was deleted or erased."""


class RequestTimeout(ProblemError):
    """408: the vault gave up on a request body that stopped arriving."""


class Conflict(ProblemError):
    """409: the state does not allow it (held data, a grace period over, a second person
    needed, an Idempotency-Key still in use)."""

    @property
    def holds(self) -> list[str]:
        """The ids of the holds that keep the data, when a hold is the reason."""
        holds = self.extra.get("holds")
        return [str(h) for h in holds] if isinstance(holds, list) else []


class RestrictedConflict(Conflict):
    """409 `…/restricted`: the subject is restricted, so the application may not delete."""


class TooLarge(ProblemError):
    """413: above the vault's limit for this body."""


class UnsupportedMediaType(ProblemError):
    """415: a body of a type the operation does not take."""


class RangeNotSatisfiable(ProblemError):
    """416: the requested byte range lies outside the artefact."""


class InvalidInput(ProblemError):
    """422: a value is wrong; `errors` names the fields."""


class Throttled(ProblemError):
    """429: too many failed authentications from this address; `retry_after` seconds."""


class ServerError(ProblemError):
    """500 and other 5xx the client does not know better."""


class IntegrityFailure(ServerError):
    """500 `…/integrity`: stored data failed its integrity check. Never altered data."""


class Unavailable(ProblemError):
    """503: the database, blob store or key service is unreachable; retry later."""


class ConnectionFailed(DatavaultError):
    """No answer: the connection failed or timed out (after the retries that were safe)."""


class UnexpectedResponse(DatavaultError):
    """The vault's answer is not what its API promises (a missing field, a wrong type)."""


class ReceiptInvalid(DatavaultError):
    """An erasure receipt failed verification: a bad signature, an unknown key, a
    payload that is not the receipt shown beside it, or a receipt of another kind."""


class WebhookVerificationError(DatavaultError):
    """A webhook delivery failed verification (signature, headers or timestamp)."""


_BY_STATUS: dict[int, type[ProblemError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    408: RequestTimeout,
    409: Conflict,
    410: Gone,
    413: TooLarge,
    415: UnsupportedMediaType,
    416: RangeNotSatisfiable,
    422: InvalidInput,
    429: Throttled,
    503: Unavailable,
}
_BY_STATUS_AND_TYPE: dict[tuple[int, str], type[ProblemError]] = {
    (403, "restricted"): Restricted,
    (409, "restricted"): RestrictedConflict,
    (500, "integrity"): IntegrityFailure,
}


def problem_class(status: int, type_: str) -> type[ProblemError]:
    slug = type_.removeprefix(PROBLEM_BASE)
    specific = _BY_STATUS_AND_TYPE.get((status, slug))
    if specific is not None:
        return specific
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else ProblemError


def problem_from_body(
    status: int,
    body: object,
    *,
    operation: str,
    request_id: str | None,
    retry_after: float | None,
) -> ProblemError:
    """The typed error for an error answer. A body that is not a problem object (a proxy's
    HTML page) gives the status's own title and no detail: nothing of it is repeated."""
    problem: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    type_ = _text(problem.get("type")) or "about:blank"
    errors = tuple(
        FieldError(_text(e.get("field")), _text(e.get("message")))
        for e in problem.get("errors", ()) or ()
        if isinstance(e, Mapping)
    )
    known = {"type", "title", "status", "detail", "request_id", "errors"}
    return problem_class(status, type_)(
        status=status,
        type=type_,
        title=_text(problem.get("title")) or phrase,
        detail=_text(problem.get("detail")),
        operation=operation,
        request_id=_text(problem.get("request_id")) or request_id,
        errors=errors,
        extra={k: v for k, v in problem.items() if k not in known},
        retry_after=retry_after,
    )


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
