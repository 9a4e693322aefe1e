"""Rendering console pages: the Jinja2 environment, the headers every page carries,
cookies, form reading with its CSRF check, and error pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import cache, wraps
from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import jinja2
from jinja2.runtime import Context
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from vault import errors
from vault.console import csrf
from vault.console.dates import format_time
from vault.console.i18n import CATALOGUE, Catalogue, choose_language
from vault.console.sections import sections_for
from vault.domain.subject_refs import SubjectRef, normalize_ref
from vault.domain.text import check_text
from vault.http.problems import STATUS

SESSION_COOKIE = "dv_console_session"
# A hold's or subject's page lists at most this many disclosures, newest disclosed first
# (GET /v1/disclosures pages through all of them).
DISCLOSURES_SHOWN = 200
LANGUAGE_COOKIE = "dv_console_lang"
SIGN_IN_PATH = "/console/sign-in"
# Console forms are a few short fields; anything larger is not one of ours.
MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 50

# Pages show personal data: no copy in browser caches (a deletion-guarantee concern), no
# framing, no referrer leaking paths, scripts only from the vault itself.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def _environment() -> jinja2.Environment:
    templates = resources.files("vault.console").joinpath("templates")
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: (
                templates.joinpath(name).read_text("utf-8")
                if templates.joinpath(name).is_file()
                else None
            )
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    return env


@cache
def environment() -> jinja2.Environment:
    """Built on first use (nothing runs at import time), then shared: it is read-only."""
    return _environment()


@jinja2.pass_context
def _when(context: Context, value: datetime | None) -> str:
    """`{{ moment|when }}`: a time in the page's language (vault/console/dates.py)."""
    return format_time(value, context["lang"])


def with_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def cookies_secure(request: Request) -> bool:
    """From configuration (Settings.cookies_secure: DATAVAULT_PUBLIC_URL), never from
    the Host header a proxy may rewrite."""
    secure: bool = request.app.state.vault.settings.cookies_secure
    return secure


def set_cookie(
    response: Response, request: Request, name: str, value: str, *, path: str = "/console",
    **kw: Any,
) -> None:  # fmt: skip
    response.set_cookie(
        name, value, path=path, httponly=True, samesite="strict",
        secure=cookies_secure(request), **kw,
    )  # fmt: skip


def clear_cookie(
    response: Response, request: Request, name: str, *, path: str = "/console"
) -> None:
    response.delete_cookie(
        name, path=path, httponly=True, samesite="strict", secure=cookies_secure(request)
    )


def language(request: Request) -> str:
    return choose_language(
        request.cookies.get(LANGUAGE_COOKIE), request.headers.get("accept-language")
    )


def page(
    request: Request, template: str, context: dict[str, Any], *, status: int = 200
) -> Response:
    lang = language(request)
    session = request.scope.get("state", {}).get("console_session")
    cookie = request.cookies.get(SESSION_COOKIE)
    nav = sections_for(session.principal.scopes) if session is not None else []
    body = (
        environment()
        .get_template(template)
        .render(
            **context,
            t=Catalogue(lang).text,
            lang=lang,
            session=session,
            csrf_token=csrf.session_token(cookie) if session is not None and cookie else "",
            path=request.url.path,
            query=urlencode,
            nav=nav,
            disclosures_shown=DISCLOSURES_SHOWN,
        )
    )
    return with_security_headers(HTMLResponse(body, status_code=status))


def error_page(request: Request, status: int, detail_key: str, detail: str = "") -> Response:
    return page(
        request,
        "error.html",
        {"status": status, "title": HTTPStatus(status).phrase, "detail_key": detail_key,
         "detail": detail},
        status=status,
    )  # fmt: skip


def field_message(field: str, exc: errors.VaultError) -> str:
    """The catalogue key for a field's error where the catalogue words it (so it reads in
    the visitor's language), else the service's own message."""
    key = f"invalid.{field}"
    return key if key in CATALOGUE else exc.detail


def redirect(url: str) -> Response:
    return with_security_headers(RedirectResponse(url, status_code=303))


class NotSignedIn(errors.Unauthenticated):
    """No live session: the browser is sent to the sign-in page."""


class CsrfRefused(errors.Forbidden):
    """A console POST without the form token its session (or sign-in page) issued."""


async def read_form(request: Request, expected_token: str) -> FormData:
    """The posted form, after the size limit, the CSRF check and the text rule
    (vault/domain/text.py) on every field."""
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise errors.MalformedInput("a form needs a Content-Length")
    if int(length) > MAX_FORM_BYTES:
        raise errors.TooLarge(f"forms are at most {MAX_FORM_BYTES} bytes")
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("application/x-www-form-urlencoded"):
        raise errors.UnsupportedMediaType("send application/x-www-form-urlencoded")
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    presented = form.get(csrf.FIELD)
    if not csrf.matches(expected_token, presented if isinstance(presented, str) else None):
        raise CsrfRefused("the form's CSRF token is missing or wrong; reload the page")
    for name, value in form.multi_items():
        check_text(name, "(form field name)")
        if isinstance(value, str):
            check_text(value, name)
    return form


Handler = Callable[[Request], Awaitable[Response]]


def console_page(handler: Handler) -> Handler:
    """Vault errors on console pages become HTML pages with the same status the API
    would answer (the one table in vault/http/problems.py), never a 500."""

    @wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except NotSignedIn:
            response = redirect(SIGN_IN_PATH)
            clear_cookie(response, request, SESSION_COOKIE)
            return response
        except errors.VaultError as exc:
            status = next((STATUS[c][0] for c in type(exc).__mro__ if c in STATUS), 500)
            # The visitor's language first; the service's own detail is shown beside it.
            key = "error.csrf" if isinstance(exc, CsrfRefused) else f"error.{status}"
            key = key if key in CATALOGUE else ""
            response = error_page(request, status, key, str(exc))
            if isinstance(exc, errors.Throttled):
                response.headers["Retry-After"] = str(exc.retry_after)
            return response

    return wrapped


def form_ref(form: FormData, name: str = "subject_ref") -> SubjectRef | None:
    """A subject reference typed into a form, normalised exactly as the API normalises
    it (no trimming: the pseudonym must be the one the data was written under); None
    when the field was left empty."""
    value = form.get(name)
    if not isinstance(value, str) or value == "":
        return None
    return normalize_ref(value, field=name)
