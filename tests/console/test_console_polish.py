"""The console as a compliance officer meets it (issue 18, item 11), over plain HTTP: the
navigation links only what the key may open, an admin key's dashboard claims nothing it
cannot see, unknown URLs get an HTML 404 page, a favicon, no inline styles, date fields
in the page's language, and the subject reference just typed shown after placing a hold.
(The browser's view of the same: test_console_browser.py.)"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.api.helpers import auth, create_key
from tests.console.support import form_token, sign_in, signed_in_token
from tests.support import ServerThread, Tenant

_NAV = re.compile(r'<nav aria-label="[^"]*">(.*?)</nav>', re.S)
_LINK = re.compile(r'<a href="(/console[^"]*)"')


def _nav_links(html: str) -> list[str]:
    match = _NAV.search(html)
    assert match, "no navigation on the page"
    return _LINK.findall(match.group(1))


@pytest.mark.parametrize(
    ("scopes", "expected"),
    [
        (["compliance"], ["/console", "/console/holds", "/console/erasures", "/console/subjects",
                          "/console/access-log"]),
        (["erasure"], ["/console", "/console/erasures"]),
        (["erasure", "read"], ["/console", "/console/erasures", "/console/subjects"]),
        (["admin"], ["/console"]),
    ],
)  # fmt: skip
def test_the_navigation_links_only_pages_the_key_may_open(
    server: ServerThread, tenant: Tenant, scopes: list[str], expected: list[str]
) -> None:
    with server.client() as http:
        key = create_key(http, tenant, scopes)
        assert sign_in(http, key["secret"]).status_code == 303
        links = _nav_links(http.get("/console").text)
        opened = {link: http.get(link).status_code for link in links}
        refused = {
            path: http.get(path).status_code
            for path in ("/console/holds", "/console/erasures", "/console/subjects",
                         "/console/access-log")
            if path not in links
        }  # fmt: skip
    assert links == expected
    assert set(opened.values()) == {200}, opened
    # What the navigation leaves out is indeed closed to the key.
    assert set(refused.values()) <= {403}, refused


def test_an_admin_dashboard_claims_nothing_it_cannot_see(
    server: ServerThread, tenant: Tenant
) -> None:
    """Issue 18: an admin key's dashboard said "Nothing is held" while holds were active."""
    with server.client() as http:
        officer = create_key(http, tenant, ["compliance"])
        placed = http.post(
            "/v1/holds", json={"reason": "litigation", "reference": "ACTIVE-1"},
            headers=auth(officer),
        )  # fmt: skip
        assert placed.status_code == 201
        admin = create_key(http, tenant, ["admin"])
        privacy = create_key(http, tenant, ["erasure"])
        pages = {}
        for name, key in (("admin", admin), ("privacy", privacy), ("officer", officer)):
            with httpx.Client(base_url=server.base_url) as browser:
                assert sign_in(browser, key["secret"]).status_code == 303
                pages[name] = browser.get("/console").text
    assert "Nothing is held" not in pages["admin"]
    assert 'id="nothing-visible"' in pages["admin"]
    assert "neither legal holds nor erasures" in pages["admin"]
    # An erasure key sees erasures only: it may say that none keeps data, not that
    # nothing is held.
    assert "Nothing is held" not in pages["privacy"]
    assert "No erasure keeps any data." in pages["privacy"]
    # The officer sees the active hold counted, per category too.
    assert "Nothing is held" not in pages["officer"]
    assert 'id="active-holds"' in pages["officer"]


def test_an_unknown_console_url_is_an_html_404_page(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        anonymous = http.get("/console/no-such-page")
        missing_file = http.get("/console/static/no-such.js")
        posted = http.post("/console/no/such/form")
        slash = http.get("/console/")
        key = create_key(http, tenant, ["compliance"])
        sign_in(http, key["secret"])
        signed_in = http.get("/console/holds/nested/no-such-page")
        api = http.get("/v1/no-such-thing")
    for response in (anonymous, missing_file, posted, signed_in):
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html"), response.headers
        assert "<h1>404 Not Found</h1>" in response.text
        assert "script-src 'self'" in response.headers["content-security-policy"]
    # Signed in, the page keeps the navigation, so the way back is one click.
    assert _nav_links(signed_in.text)[0] == "/console"
    assert slash.status_code == 303 and slash.headers["location"] == "/console"
    # The JSON API answers problem+json as before.
    assert api.headers["content-type"].startswith("application/problem+json")


def test_every_page_names_a_favicon_the_vault_serves(server: ServerThread) -> None:
    with server.client() as http:
        page = http.get("/console/sign-in")
        icon = http.get("/console/static/favicon.svg")
    assert '<link rel="icon" href="/console/static/favicon.svg" type="image/svg+xml">' in page.text
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.content.startswith(b"<svg") and b"<script" not in icon.content


def _pages(http: httpx.Client, hold_id: str) -> dict[str, httpx.Response]:
    token = signed_in_token(http)
    return {
        "dashboard": http.get("/console"),
        "holds": http.get("/console/holds?active=false"),
        "hold-new": http.get("/console/holds/new"),
        "hold": http.get(f"/console/holds/{hold_id}"),
        "erasures": http.get("/console/erasures"),
        "subjects": http.get("/console/subjects"),
        "subject": http.post("/console/subjects", data={"csrf_token": token, "ref": "polish"}),
        "access-log": http.get("/console/access-log"),
        "not-found": http.get("/console/nowhere"),
        "form-errors": http.post("/console/holds/new", data={"csrf_token": token}),
    }


def test_pages_have_no_inline_styles_and_a_csp_without_unsafe_inline(
    server: ServerThread, tenant: Tenant
) -> None:
    """Every style is in console.css, so `style-src 'self'` holds and the browser blocks
    nothing (the browser test also listens for violations)."""
    with server.client() as http:
        key = create_key(http, tenant, ["compliance"])
        hold = http.post(
            "/v1/holds", json={"reason": "billing", "reference": "CSP"}, headers=auth(key)
        ).json()
        sign_in(http, key["secret"])
        pages = _pages(http, hold["id"])
        pages["sign-in"] = httpx.get(f"{server.base_url}/console/sign-in")
    for name, response in pages.items():
        policy = response.headers["content-security-policy"]
        assert "style-src 'self'" in policy and "unsafe-inline" not in policy, name
        assert not re.search(r"<[^>]+\sstyle\s*=", response.text), name
        assert "<style" not in response.text, name


def test_date_fields_follow_the_pages_language(server: ServerThread, tenant: Tenant) -> None:
    """A browser's date picker follows the browser's language, not the page's: the
    console's date fields are text fields in the page's order, and times on the page are
    shown in it too."""
    with server.client() as http:
        key = create_key(http, tenant, ["compliance"])
        sign_in(http, key["secret"])
        english_form = http.get("/console/holds/new").text
        token = form_token(english_form)
        day_first_in_english = http.post(
            "/console/holds/new",
            data={"csrf_token": token, "reason": "billing", "reference": "DATE-EN",
                  "expires_at": "01-03-2099 14:30"},
        )  # fmt: skip
        iso_in_english = http.post(
            "/console/holds/new",
            data={"csrf_token": token, "reason": "billing", "reference": "DATE-EN",
                  "expires_at": "2099-03-01 14:30"},
        )  # fmt: skip
        english_page = http.get(iso_in_english.headers["location"]).text
        http.cookies.set("dv_console_lang", "nl", path="/console")
        dutch_form = http.get("/console/holds/new").text
        day_first_in_dutch = http.post(
            "/console/holds/new",
            data={"csrf_token": token, "reason": "billing", "reference": "DATE-NL",
                  "expires_at": "01-03-2099 14:30"},
        )  # fmt: skip
        dutch_page = http.get(day_first_in_dutch.headers["location"]).text
        holds = http.get("/v1/holds", headers=auth(key)).json()["items"]
    for form in (english_form, dutch_form):
        assert 'type="datetime-local"' not in form
        assert re.search(r'<input id="expires_at" name="expires_at" type="text"', form)
    assert "e.g. 2025-03-01 14:30" in english_form
    assert "bijv. 01-03-2025 14:30" in dutch_form
    assert day_first_in_english.status_code == 422
    assert 'id="expires_at-error"' in day_first_in_english.text
    assert "such as 2025-03-01 14:30" in day_first_in_english.text
    assert iso_in_english.status_code == day_first_in_dutch.status_code == 303
    expiries = {h["reference"]: h["expires_at"] for h in holds}
    assert expiries == {"DATE-EN": "2099-03-01T14:30:00Z", "DATE-NL": "2099-03-01T14:30:00Z"}
    assert "2099-03-01 14:30 UTC" in english_page
    assert "01-03-2099 14:30 UTC" in dutch_page


def _place(http: httpx.Client, **fields: Any) -> httpx.Response:
    token = form_token(http.get("/console/holds/new").text)
    data = {"csrf_token": token, "reason": "fraud_investigation", "reference": "TYPED", **fields}
    return http.post("/console/holds/new", data=data)


def test_after_placing_a_hold_the_page_shows_the_reference_just_typed(
    server: ServerThread, tenant: Tenant
) -> None:
    """The vault keeps only the keyed hash of a held subject's reference: the page right
    after placing shows the reference once, from a cookie of that hold's page only,
    never from the URL; reloading shows the hash alone."""
    ref = "Klant 0042 / ünïcode"
    with server.client() as http:
        sign_in(http, create_key(http, tenant, ["compliance"])["secret"])
        placed = _place(http, subject_ref=ref)
        location = placed.headers["location"]
        cookie = placed.headers["set-cookie"]
        first = http.get(location)
        again = http.get(location)
        tenant_wide = http.get(_place(http).headers["location"])
    assert ref not in location and "Klant" not in location
    assert "dv_console_typed_ref=" in cookie and "HttpOnly" in cookie
    assert f"Path={location.split('?')[0]}" in cookie and "Max-Age" not in cookie
    assert f'<strong id="typed-ref">{ref}</strong>' in first.text
    assert "dv_console_typed_ref" in first.headers["set-cookie"]  # cleared
    assert ref not in again.text
    assert 'id="typed-ref"' not in tenant_wide.text


def test_a_typed_reference_shows_only_on_the_hold_it_was_placed_with(
    server: ServerThread, tenant: Tenant
) -> None:
    """A cookie carrying another reference (planted, or left from another hold) is not
    shown: the page checks its keyed hash against the hold's."""
    with server.client() as http:
        sign_in(http, create_key(http, tenant, ["compliance"])["secret"])
        location = _place(http, subject_ref="the-real-subject").headers["location"]
        path = location.split("?")[0]
        http.cookies.delete("dv_console_typed_ref")
        planted = "c29tZW9uZS1lbHNl"  # base64url of "someone-else"
        http.cookies.set("dv_console_typed_ref", planted, path=path)
        shown = http.get(location)
        http.cookies.set("dv_console_typed_ref", "%%not base64%%", path=path)
        garbled = http.get(location)
    assert shown.status_code == garbled.status_code == 200
    assert "someone-else" not in shown.text and 'id="typed-ref"' not in shown.text
    assert 'id="typed-ref"' not in garbled.text
