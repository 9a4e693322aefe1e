"""Subject references in paths.

API.md: `{ref}` is percent-encoded in the path, `/` included. Routing works on the decoded
path, where an encoded `/` would split the reference into several segments, so this
middleware takes the reference from the raw path, keeps it for the endpoint, and routes
on a placeholder segment. Route templates (and so the access log) stay
`/v1/subjects/{ref}/...`.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from vault.domain.subject_refs import SubjectRef, normalize_ref
from vault.errors import InvalidInput

_PREFIX = b"/v1/subjects/"
_PLACEHOLDER = "_"
_STATE_KEY = "subject_ref_raw"


class SubjectPathMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        if raw_path.startswith(_PREFIX):
            encoded, _, rest = raw_path[len(_PREFIX) :].partition(b"/")
            if encoded:
                state: dict[str, Any] = scope.setdefault("state", {})
                try:
                    state[_STATE_KEY] = urllib.parse.unquote_to_bytes(encoded).decode("utf-8")
                except UnicodeDecodeError:
                    state[_STATE_KEY] = None  # not UTF-8: refused by subject_ref()
                tail = urllib.parse.unquote(rest.decode("latin-1"))
                has_tail = bool(rest) or raw_path.endswith(b"/")
                path = f"/v1/subjects/{_PLACEHOLDER}" + (f"/{tail}" if has_tail else "")
                # In place: the access-log middleware outside reads the matched route
                # from this same scope.
                scope["path"] = path
        await self.app(scope, receive, send)


def never_redirected(scope: Scope) -> bool:
    """Whether this request, if no route matches it, must be answered 404 rather than
    with Starlette's trailing-slash redirect: a subject path is routed on the
    placeholder, so the redirect's Location would name the subject `_`, and a client
    following it (a 307 keeps method and body) would read, delete or erase that subject
    instead of its own (red team 20). A subject path has one spelling, without the
    slash."""
    return _STATE_KEY in scope.get("state", {})


def subject_ref(request: Request) -> SubjectRef:
    raw = request.scope.get("state", {}).get(_STATE_KEY)
    if raw is None:
        raise InvalidInput("ref must be percent-encoded UTF-8", field="ref")
    return normalize_ref(raw, field="ref")


def subject_location(ref: SubjectRef, *parts: str) -> str:
    """The path of a resource under a subject, for a Location header: the reference
    percent-encoded as one segment (`/` included), as API.md spells it."""
    segment = urllib.parse.quote(ref.reveal(), safe="")
    return "/".join([f"/v1/subjects/{segment}", *parts])
