"""Red team 17: the console's hold forms as a way around the API's rules. A one-key
release of a litigation hold, a sooner expiry, a form posted without (or with another
session's) CSRF token, a session cookie planted before sign-in, and markup in a case
reference, a note, a release reason, a key's owner or a typed subject reference."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.api.helpers import auth, create_key, operator_key, rfc3339
from tests.console.support import form_token, sign_in, signed_in_token
from tests.support import ServerThread, Tenant

MARKUP = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


def _hold(http: httpx.Client, key: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = {"reason": "litigation", "reference": "RT17-C", **fields}
    response = http.post("/v1/holds", json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    hold: dict[str, Any] = response.json()
    return hold


@contextmanager
def _signed_in(server: ServerThread, key: dict[str, Any]) -> Iterator[httpx.Client]:
    with server.client() as http:
        assert sign_in(http, key["secret"]).status_code == 303
        yield http


def test_the_console_cannot_release_a_litigation_hold_with_one_person(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as api:
        kim = operator_key(server, tenant, ["compliance"], "rt17-console-kim")
        kim_again = operator_key(server, tenant, ["compliance"], "rt17-console-kim")
        hold = _hold(api, kim)
    release = f"/console/holds/{hold['id']}/release"
    with _signed_in(server, kim) as console:
        first = console.post(
            release, data={"reason": "done", "csrf_token": signed_in_token(console)}
        )
        again = console.post(
            release, data={"reason": "done", "csrf_token": signed_in_token(console)}
        )
    with _signed_in(server, kim_again) as console:
        token = signed_in_token(console, f"/console/holds/{hold['id']}")
        same_owner = console.post(release, data={"reason": "done", "csrf_token": token})
    with server.client() as api:
        shown = api.get(f"/v1/holds/{hold['id']}", headers=auth(kim)).json()
    assert first.status_code == 303
    assert again.status_code == 409 and same_owner.status_code == 409
    assert shown["released_at"] is None and shown["release_requested_by"] == kim["id"]


def test_the_console_cannot_bring_an_expiry_forward(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as api:
        officer = create_key(api, tenant, ["compliance"])
        until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=40)
        hold = _hold(api, officer, expires_at=rfc3339(until))
        open_ended = _hold(api, officer)
    with _signed_in(server, officer) as console:
        token = signed_in_token(console)
        sooner = console.post(
            f"/console/holds/{hold['id']}/amend",
            data={
                "expires_at": (until - timedelta(days=10)).strftime("%Y-%m-%d"),
                "csrf_token": token,
            },
        )
        given_one = console.post(
            f"/console/holds/{open_ended['id']}/amend",
            data={
                "expires_at": (until + timedelta(days=10)).strftime("%Y-%m-%d"),
                "csrf_token": token,
            },
        )
    with server.client() as api:
        shown = api.get(f"/v1/holds/{hold['id']}", headers=auth(officer)).json()
        still_open = api.get(f"/v1/holds/{open_ended['id']}", headers=auth(officer)).json()
    assert sooner.status_code == 422, sooner.status_code
    assert given_one.status_code == 422, given_one.status_code
    assert shown["expires_at"] == rfc3339(until)
    assert still_open["expires_at"] is None


def test_a_release_form_needs_this_sessions_token(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as api:
        officer = create_key(api, tenant, ["compliance"], owner="rt17-csrf-a")
        other = create_key(api, tenant, ["compliance"], owner="rt17-csrf-b")
        hold = _hold(api, officer, reason="billing")
    with _signed_in(server, other) as elsewhere:
        foreign_token = signed_in_token(elsewhere)
    release = f"/console/holds/{hold['id']}/release"
    with _signed_in(server, officer) as console:
        missing = console.post(release, data={"reason": "x"})
        foreign = console.post(release, data={"reason": "x", "csrf_token": foreign_token})
        in_query = console.post(
            f"{release}?csrf_token={signed_in_token(console)}", data={"reason": "x"}
        )
        cross_site = console.post(
            release,
            data={"reason": "x", "csrf_token": signed_in_token(console)},
            headers={"Content-Type": "text/plain"},
        )
    with server.client() as api:
        shown = api.get(f"/v1/holds/{hold['id']}", headers=auth(officer)).json()
    assert [missing.status_code, foreign.status_code, in_query.status_code] == [403, 403, 403]
    assert cross_site.status_code in (403, 415, 422), cross_site.status_code
    assert shown["released_at"] is None


def test_a_session_cookie_planted_before_sign_in_is_not_adopted(
    server: ServerThread, tenant: Tenant
) -> None:
    planted = "rt17-planted-session-value-0123456789abcdef"
    with server.client() as api:
        officer = create_key(api, tenant, ["compliance"])
    with server.client() as console:
        console.cookies.set("dv_console_session", planted)
        signed = sign_in(console, officer["secret"])
        issued = signed.headers.get("set-cookie", "")
    with server.client() as attacker:
        attacker.cookies.set("dv_console_session", planted)
        page = attacker.get("/console/holds")
    assert signed.status_code == 303
    assert "dv_console_session=" in issued and planted not in issued
    assert page.status_code in (303, 401), page.status_code


def test_markup_in_hold_fields_and_owners_is_escaped_on_every_hold_page(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as api:
        officer = create_key(api, tenant, ["compliance"], owner=MARKUP)
        hold = _hold(api, officer, reference=MARKUP, note=MARKUP)
        asked = api.post(
            f"/v1/holds/{hold['id']}/release", json={"reason": MARKUP}, headers=auth(officer)
        )
        assert asked.status_code == 202
    with _signed_in(server, officer) as console:
        token = signed_in_token(console)
        placed = console.post(
            "/console/holds/new",
            data={"reason": "billing", "reference": MARKUP, "note": MARKUP,
                  "subject_ref": MARKUP[:150], "csrf_token": token},
        )  # fmt: skip
        pages = {
            "list": console.get("/console/holds"),
            "hold": console.get(f"/console/holds/{hold['id']}"),
            "placed": console.get(placed.headers.get("location", "/console/holds")),
            "dashboard": console.get("/console"),
            "access log": console.get("/console/access-log"),
        }
    assert placed.status_code == 303, placed.text[:500]
    for name, page in pages.items():
        assert page.status_code == 200, (name, page.status_code)
        assert "<script>alert(1)" not in page.text, name
        assert "<img src=x" not in page.text, name
    assert "&lt;script&gt;" in pages["hold"].text
    assert form_token(pages["hold"].text)
