"""The console's route table, its static files and the language switch.

Routes carry their full /console/... paths (no Mount), so the access log records each
console request under its own route template, like any API route.
htmx is vendored from its npm package: htmx.org 2.0.11, dist/htmx.min.js,
sha256 d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717 (checked by a test).
"""

from __future__ import annotations

from importlib import resources
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vault.console import access, auth, dashboard, erasures, holds, subjects
from vault.console.i18n import LANGUAGES
from vault.console.web import LANGUAGE_COOKIE, console_page, redirect, set_cookie
from vault.errors import NotFound
from vault.http.routing import route

HTMX_VERSION = "2.0.11"
HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
_STATIC = {
    "htmx.min.js": "text/javascript",
    "console.js": "text/javascript",
    "console.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
# A day: the files change only with a release of the vault.
_STATIC_CACHE = "public, max-age=86400"
_LANGUAGE_COOKIE_SECONDS = 365 * 24 * 3600


@console_page
async def static_file(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in _STATIC:
        raise NotFound("no such file")
    data = resources.files("vault.console").joinpath("static", name).read_bytes()
    return Response(
        data,
        media_type=_STATIC[name],
        headers={"Cache-Control": _STATIC_CACHE, "X-Content-Type-Options": "nosniff"},
    )


async def switch_language(request: Request) -> Response:
    """A plain link on every page (works without JavaScript): remember the choice and go
    back to the page it came from, which must be a console page."""
    chosen = request.query_params.get("set", "")
    target = request.query_params.get("next", "/console")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console"):
        target = "/console"
    response = redirect(target)
    if chosen in LANGUAGES:
        set_cookie(response, request, LANGUAGE_COOKIE, chosen, max_age=_LANGUAGE_COOKIE_SECONDS)
    return response


@console_page
async def unknown_page(request: Request) -> Response:
    """Any other URL under /console: the console's own 404 page (with its navigation for
    a signed-in visitor), never the API's problem+json. /console/ is the dashboard."""
    if request.path_params["rest"] == "":
        return redirect("/console")
    await auth.current_session(request)
    raise NotFound("there is no such page in the console")


ROUTES: list[Route] = [
    route("/console", GET=dashboard.dashboard),
    route("/console/sign-in", GET=auth.sign_in_form, POST=auth.sign_in),
    route("/console/sign-out", POST=auth.sign_out),
    route("/console/language", GET=switch_language),
    route("/console/static/{name}", GET=static_file),
    route("/console/holds", GET=holds.list_holds),
    route("/console/holds/new", GET=holds.new_hold_form, POST=holds.place_hold),
    route("/console/holds/{hold_id}", GET=holds.show_hold),
    route("/console/holds/{hold_id}/amend", POST=holds.amend_hold),
    route("/console/holds/{hold_id}/release", POST=holds.release_hold),
    route("/console/holds/{hold_id}/disclosures", POST=holds.record_disclosure),
    route("/console/erasures", GET=erasures.list_erasures),
    route("/console/erasures/{erasure_id}", GET=erasures.show_erasure),
    route("/console/erasures/{erasure_id}/receipt.json", GET=erasures.download_receipt),
    route("/console/subjects", GET=subjects.lookup_form, POST=subjects.lookup),
    route("/console/subjects/restriction", POST=subjects.set_restriction),
    route("/console/subjects/export", POST=subjects.export),
    route("/console/access-log", GET=access.search_page, POST=access.submit_search),
    route("/console/access-log.csv", GET=access.download_csv),
    route("/console/access-log/verify", POST=access.verify_chain),
    # Last: only what no route above matched.
    route("/console/{rest:path}", GET=unknown_page, POST=unknown_page),
]
