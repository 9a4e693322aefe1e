"""CSRF tokens: synchronizer tokens bound to the session, and a double-submit token for
the sign-in form (which has no session yet).

A form token is HMAC-SHA256 of a purpose under the secret cookie value: a page of
another site can neither read the HttpOnly cookie nor compute the token from it, and
SameSite=Strict keeps the cookie off its cross-site requests in the first place.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

FIELD = "csrf_token"
PRE_SESSION_COOKIE = "dv_console_presession"
_SESSION_PURPOSE = b"datavault console csrf v1"
_SIGN_IN_PURPOSE = b"datavault console sign-in csrf v1"


def _mac(cookie_value: str, purpose: bytes) -> str:
    digest = hmac.new(cookie_value.encode("ascii", "replace"), purpose, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def session_token(session_cookie: str) -> str:
    return _mac(session_cookie, _SESSION_PURPOSE)


def sign_in_token(pre_session_cookie: str) -> str:
    return _mac(pre_session_cookie, _SIGN_IN_PURPOSE)


def new_pre_session() -> str:
    return secrets.token_urlsafe(32)


def matches(expected: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(
        expected.encode("ascii", "replace"), presented.encode("ascii", "replace")
    )
