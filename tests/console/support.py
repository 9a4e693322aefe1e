"""Helpers for console tests: sign in over plain HTTP like a browser without JavaScript."""

from __future__ import annotations

import re

import httpx

_TOKEN = re.compile(r'name="csrf_token" value="([^"]*)"')


def form_token(html: str) -> str:
    match = _TOKEN.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def sign_in(http: httpx.Client, key: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """GET the sign-in page (pre-session cookie and token), then POST the key."""
    page = http.get("/console/sign-in", headers=headers)
    assert page.status_code == 200, page.text
    return http.post(
        "/console/sign-in",
        data={"csrf_token": form_token(page.text), "api_key": key},
        headers=headers,
    )


def signed_in_token(http: httpx.Client, path: str = "/console") -> str:
    """The session's form token, read from a console page."""
    page = http.get(path)
    assert page.status_code == 200, page.text
    return form_token(page.text)
