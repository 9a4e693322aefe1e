"""Sign-in (an API key exchanged once for a server-side session), sign-out, and the
session check every console page makes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vault import errors
from vault.console import csrf
from vault.console.sections import may_open
from vault.console.state import console_state
from vault.console.web import (
    SESSION_COOKIE,
    SIGN_IN_PATH,
    NotSignedIn,
    clear_cookie,
    console_page,
    page,
    read_form,
    redirect,
    set_cookie,
)
from vault.domain.scopes import Scope, allows
from vault.http.auth import authenticate
from vault.services.console_sessions import ConsoleSession

# Issue #9: compliance or admin keys sign in; erasure keys too, for the erasure pages.
SIGN_IN_SCOPES = (Scope.COMPLIANCE, Scope.ADMIN, Scope.ERASURE)


async def current_session(request: Request) -> ConsoleSession | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    session = await console_state(request).sessions.resume(token, request.state.client_ip)
    if session is not None:
        # The access log records console requests exactly like API calls.
        request.state.principal = session.principal
        request.state.key_prefix = session.principal.prefix
        request.state.console_session = session
    return session


async def signed_in(request: Request, *scopes: Scope) -> ConsoleSession:
    """The live session, if its key holds one of `scopes`: the same scopes as the API."""
    session = await current_session(request)
    if session is None:
        raise NotSignedIn("sign in first")
    if not may_open(session.principal.scopes, scopes):
        needed = " or ".join(repr(s.value) for s in scopes)
        raise errors.Forbidden(f"this API key lacks the {needed} scope")
    return session


def session_csrf(request: Request) -> str:
    return csrf.session_token(request.cookies.get(SESSION_COOKIE, ""))


def may(session: ConsoleSession, scope: Scope) -> bool:
    return allows(session.principal.scopes, scope)


def _sign_in_page(
    request: Request, pre_session: str, *, error: str = "", status: int = 200
) -> Response:
    response = page(
        request,
        "sign_in.html",
        {"sign_in_token": csrf.sign_in_token(pre_session), "error": error,
         "signed_out": request.query_params.get("signed_out") == "1"},
        status=status,
    )  # fmt: skip
    set_cookie(response, request, csrf.PRE_SESSION_COOKIE, pre_session)
    return response


@console_page
async def sign_in_form(request: Request) -> Response:
    if await current_session(request) is not None:
        return redirect("/console")
    pre_session = request.cookies.get(csrf.PRE_SESSION_COOKIE) or csrf.new_pre_session()
    return _sign_in_page(request, pre_session)


@console_page
async def sign_in(request: Request) -> Response:
    pre_session = request.cookies.get(csrf.PRE_SESSION_COOKIE, "")
    form = await read_form(request, csrf.sign_in_token(pre_session) if pre_session else "\0")
    token = form.get("api_key")
    token = token.strip() if isinstance(token, str) else ""
    try:
        principal = await authenticate(request, token)
    except errors.Throttled:
        raise
    except errors.Unauthenticated:
        return _sign_in_page(request, pre_session, error="sign_in.wrong_key", status=401)
    if not any(allows(principal.scopes, s) for s in SIGN_IN_SCOPES):
        return _sign_in_page(request, pre_session, error="sign_in.wrong_scope", status=403)
    sessions = console_state(request).sessions
    # Signing in again ends the session this browser had, rather than leaving it behind.
    previous = await sessions.resume(request.cookies.get(SESSION_COOKIE, ""), None)
    if previous is not None:
        await sessions.close(previous)
    token_value, _ = await sessions.open(principal)
    response = redirect("/console")
    set_cookie(response, request, SESSION_COOKIE, token_value)
    clear_cookie(response, request, csrf.PRE_SESSION_COOKIE)
    return response


@console_page
async def sign_out(request: Request) -> Response:
    session = await signed_in(request)
    await read_form(request, session_csrf(request))
    await console_state(request).sessions.close(session)
    response = redirect(f"{SIGN_IN_PATH}?signed_out=1")
    clear_cookie(response, request, SESSION_COOKIE)
    return response
