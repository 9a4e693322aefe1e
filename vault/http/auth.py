"""Authentication and scope checks for API endpoints."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vault.domain.api_keys import presented_prefix
from vault.domain.scopes import Scope, allows
from vault.errors import Forbidden, KeyNoLongerLive, Throttled, Unauthenticated
from vault.http.problems import problem_for
from vault.http.state import vault_state
from vault.services.api_keys import KeyNotLive, KeyRefusedForAddress, Principal

_BEARER = "bearer "


async def require(
    request: Request, *scopes: Scope, liveness_in_statement: bool = False
) -> Principal:
    """The caller's key, if it is live and holds one of `scopes` (or a scope implying it).

    `liveness_in_statement`: the endpoint passes `Principal.key_to_check` to a request
    function that checks revocation and tenant closure in the statement that reads or
    writes, so a key verified in the last minute is recognised without a lookup of its own
    (ApiKeyService.authenticate)."""
    principal = await authenticate(request, liveness_in_statement=liveness_in_statement)
    if not any(allows(principal.scopes, scope) for scope in scopes):
        needed = " or ".join(repr(scope.value) for scope in scopes)
        raise Forbidden(f"this API key lacks the {needed} scope")
    return principal


def presented_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header[len(_BEARER) :].strip() if header.lower().startswith(_BEARER) else ""


async def authenticate(
    request: Request, token: str | None = None, *, liveness_in_statement: bool = False
) -> Principal:
    """The live key `token` names (the console's sign-in form), or by default the one in
    the Authorization header, looked up once per request; whatever its scopes.

    Throttling (API.md): once one IP has had too many missing or wrong keys within the
    window, its missing or wrong keys get 429 instead of 401 for a whole window from the
    first refused one. A valid key is never refused by this, so an attacker hammering
    from a shared address cannot lock out real users.
    """
    if token is None:
        known: Principal | None = getattr(request.state, "principal", None)
        if known is not None:
            return known
        token = presented_token(request)
    state = vault_state(request)
    ip = request.state.client_ip
    # Only the public prefix of a presented key is ever logged, never the secret.
    request.state.key_prefix = presented_prefix(token)
    try:
        if not token:
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
        principal = await state.api_keys.authenticate(
            token, ip, liveness_in_statement=liveness_in_statement
        )
    except Unauthenticated as refused:
        if isinstance(refused, KeyNotLive):
            # A revoked or expired key's genuine secret: its tenant's access log shows
            # the attempt, under the key's id and prefix, and where from (runbook).
            request.state.refused_key = refused.key
            request.state.key_prefix = refused.key.prefix
        retry_after = state.auth_throttle.failed_attempt(ip)
        if retry_after is not None:
            state.metrics.auth_failures.labels(reason="throttled").inc()
            raise Throttled("too many failed authentication attempts", retry_after) from None
        state.metrics.auth_failures.labels(reason="invalid").inc()
        raise
    except KeyRefusedForAddress as refused:
        # The key is genuine: its tenant's access log shows the attempt and where from.
        request.state.refused_key = refused.key
        state.metrics.auth_failures.labels(reason="address").inc()
        raise
    request.state.principal = principal
    request.state.key_prefix = principal.prefix
    return principal


async def key_no_longer_live_handler(request: Request, exc: Exception) -> Response:
    """A key recognised from memory turned out revoked (or its tenant closed) in the
    request's own statement: answered and counted like any invalid key, logged as an
    attempt with the key named rather than as a use, and looked up in full next time."""
    assert isinstance(exc, KeyNoLongerLive)
    state = vault_state(request)
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is not None:
        state.api_keys.forget(principal.key_id)
        request.state.refused_key = principal
        request.state.principal = None
    state.auth_throttle.record_failure(request.state.client_ip)
    state.metrics.auth_failures.labels(reason="invalid").inc()
    return problem_for(exc, getattr(request.state, "request_id", None))
