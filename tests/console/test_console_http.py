"""The console over plain HTTP (no JavaScript): sign-in, sessions, CSRF, tenant isolation,
throttling and the access log."""

from __future__ import annotations

import dataclasses
import uuid

import httpx
import pytest

from tests.api.helpers import access_log, auth, create_key, from_ip
from tests.console.support import form_token, sign_in, signed_in_token
from tests.support import ServerThread, Tenant, running_server
from vault.config import Settings
from vault.console import access


def _officer(http: httpx.Client, tenant: Tenant) -> dict[str, str]:
    return create_key(http, tenant, ["compliance"])


def test_a_compliance_key_signs_in_and_out(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        key = _officer(http, tenant)
        signed = sign_in(http, key["secret"])
        assert signed.status_code == 303
        assert signed.headers["location"] == "/console"
        dashboard = http.get("/console")
        assert dashboard.status_code == 200
        assert key["prefix"] in dashboard.text
        out = http.post("/console/sign-out", data={"csrf_token": form_token(dashboard.text)})
        assert out.status_code == 303
        again = http.get("/console")
    assert again.status_code == 303
    assert again.headers["location"] == "/console/sign-in"


def test_the_old_session_cookie_is_dead_after_sign_out(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        key = _officer(http, tenant)
        sign_in(http, key["secret"])
        cookie = http.cookies.get("dv_console_session")
        assert cookie
        http.post("/console/sign-out", data={"csrf_token": signed_in_token(http)})
    with server.client(cookies={"dv_console_session": cookie}) as replay:
        assert replay.get("/console").status_code == 303


def test_a_wrong_key_gets_no_session(server: ServerThread) -> None:
    with server.client() as http:
        refused = sign_in(http, "dv_nope_" + "x" * 43, headers=from_ip("192.0.2.41"))
        assert refused.status_code == 401
        assert "not valid" in refused.text
        assert "dv_console_session" not in http.cookies
        assert http.get("/console").status_code == 303


def test_keys_without_a_console_scope_cannot_sign_in(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        reader = create_key(http, tenant, ["read", "ingest"])
        refused = sign_in(http, reader["secret"])
    assert refused.status_code == 403
    assert "dv_console_session" not in http.cookies


def _cookie_flags(response: httpx.Response) -> str:
    return response.headers["set-cookie"].lower()


def test_session_cookie_is_httponly_strict_and_not_secure_for_a_loopback_http_url(
    server: ServerThread, tenant: Tenant
) -> None:
    # The session server's public URL is its bind address, http://127.0.0.1:<port>: a
    # trial run, where a browser could not send a Secure cookie back over plain HTTP.
    # A Host header naming another host changes nothing: the flag follows configuration.
    assert not server.settings.cookies_secure
    with server.client() as http:
        key = _officer(http, tenant)
        local = sign_in(http, key["secret"])
    with server.client() as http:
        renamed = sign_in(http, key["secret"], headers={"Host": "vault.example.com"})
    for response in (local, renamed):
        flags = _cookie_flags(response)
        assert "dv_console_session=" in flags
        assert "httponly" in flags
        assert "samesite=strict" in flags
        assert "path=/console" in flags
        assert "secure" not in flags.replace("dv_console_session", "")
    # The key itself never goes back to the browser.
    assert key["secret"] not in local.text + local.headers["set-cookie"]


def test_session_cookie_is_secure_for_an_https_public_url_whatever_the_host_header(
    settings: Settings, database_url: str, tenant: Tenant
) -> None:
    """Issue 18: the flag followed the Host header, so a proxy forwarding `Host:
    127.0.0.1` dropped it. With DATAVAULT_PUBLIC_URL=https://... it is always set."""
    behind_tls = dataclasses.replace(settings, public_url="https://vault.example.com")
    with running_server(behind_tls, database_url) as vault, vault.client() as http:
        key = _officer(http, tenant)
        form = http.get("/console/sign-in", headers={"Host": "127.0.0.1"})
        pre_session = form.headers["set-cookie"].split(";")[0]
        # A Secure cookie is not sent back over plain HTTP by a client, so hand it over.
        signed = http.post(
            "/console/sign-in",
            data={"csrf_token": form_token(form.text), "api_key": key["secret"]},
            headers={"Host": "127.0.0.1", "Cookie": pre_session},
        )
    assert signed.status_code == 303, signed.text
    for response in (form, signed):
        assert "; secure" in _cookie_flags(response)
        assert "httponly" in _cookie_flags(response)


def test_pages_forbid_caching_framing_and_foreign_scripts(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        sign_in(http, _officer(http, tenant)["secret"])
        for path in ("/console", "/console/holds", "/console/sign-in"):
            headers = http.get(path).headers
            assert headers["cache-control"] == "no-store", path
            assert "script-src 'self'" in headers["content-security-policy"]
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
            assert headers["x-frame-options"] == "DENY"
            assert headers["referrer-policy"] == "no-referrer"


def test_a_post_without_the_csrf_token_is_refused(server: ServerThread, tenant: Tenant) -> None:
    hold = {"reason": "billing", "reference": "CASE-CSRF"}
    with server.client() as http:
        officer = _officer(http, tenant)
        sign_in(http, officer["secret"])
        missing = http.post("/console/holds/new", data=hold)
        wrong = http.post("/console/holds/new", data={**hold, "csrf_token": "x" * 43})
        placed = http.post("/console/holds/new", data={**hold, "csrf_token": signed_in_token(http)})
        listed = http.get("/v1/holds", headers=auth(officer)).json()["items"]
    assert missing.status_code == 403
    assert wrong.status_code == 403
    assert "out of date" in missing.text
    assert placed.status_code == 303
    # Only the post with the token placed a hold.
    assert [h["reference"] for h in listed] == ["CASE-CSRF"]


def test_sign_in_without_its_pre_session_token_is_refused(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        key = _officer(http, tenant)
        forged = http.post("/console/sign-in", data={"api_key": key["secret"]})
    assert forged.status_code == 403
    assert "dv_console_session" not in http.cookies


def test_another_tenants_hold_and_erasure_are_404(
    server: ServerThread, tenant: Tenant, new_tenant: object
) -> None:
    assert callable(new_tenant)
    other: Tenant = new_tenant()
    with server.client() as http:
        theirs = create_key(http, other, ["compliance", "erasure"])
        hold = http.post(
            "/v1/holds", json={"reason": "billing", "reference": "THEIRS"}, headers=auth(theirs)
        ).json()
        erasure = http.post("/v1/subjects/someone/erasure", headers=auth(theirs)).json()
        sign_in(http, _officer(http, tenant)["secret"])
        token = signed_in_token(http)
        hold_page = http.get(f"/console/holds/{hold['id']}")
        release = http.post(
            f"/console/holds/{hold['id']}/release", data={"csrf_token": token, "reason": "x"}
        )
        erasure_page = http.get(f"/console/erasures/{erasure['id']}")
        receipt = http.get(f"/console/erasures/{erasure['id']}/receipt.json")
        listing = http.get("/console/holds")
        unknown = http.get(f"/console/holds/{uuid.uuid4()}")
        after = http.get(f"/v1/holds/{hold['id']}", headers=auth(theirs)).json()
    assert hold_page.status_code == 404
    assert release.status_code == 404
    assert erasure_page.status_code == 404
    assert receipt.status_code == 404
    assert unknown.status_code == 404
    assert "THEIRS" not in listing.text
    assert after["released_at"] is None


def test_console_sign_in_shares_the_api_throttle(server: ServerThread, tenant: Tenant) -> None:
    ip = from_ip("192.0.2.77")
    with server.client() as http:
        key = _officer(http, tenant)
        statuses = [
            sign_in(http, f"dv_bad_{n}" + "y" * 43, headers=ip).status_code for n in range(5)
        ]
        throttled = sign_in(http, "dv_bad_more" + "y" * 43, headers=ip)
        # The same budget as the API: the API is throttled for this address now too.
        api = http.get("/v1/holds", headers={"Authorization": "Bearer wrong", **ip})
        # A genuine key is never refused by the throttle.
        genuine = sign_in(http, key["secret"], headers=ip)
    assert statuses == [401] * 5
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) >= 1
    assert api.status_code == 429
    assert genuine.status_code == 303


def test_console_actions_are_in_the_access_log_with_key_and_ip(
    server: ServerThread, tenant: Tenant
) -> None:
    ip = from_ip("198.51.100.23")
    with server.client() as http:
        officer = _officer(http, tenant)
        sign_in(http, officer["secret"], headers=ip)
        token = form_token(http.get("/console/holds/new", headers=ip).text)
        placed = http.post(
            "/console/holds/new",
            data={"csrf_token": token, "reason": "regulatory", "reference": "LOGGED"},
            headers=ip,
        )
        assert placed.status_code == 303
        rows = access_log(http, officer, ip="198.51.100.23")
    seen = {(r["method"], r["route"], r["status"]) for r in rows}
    assert ("POST", "/console/sign-in", 303) in seen
    assert ("GET", "/console/holds/new", 200) in seen
    assert ("POST", "/console/holds/new", 303) in seen
    assert {r["api_key_id"] for r in rows} == {officer["id"]}
    assert {r["ip"] for r in rows} == {"198.51.100.23"}


def test_revoking_the_key_ends_its_console_sessions(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        officer = _officer(http, tenant)
        sign_in(http, officer["secret"])
        assert http.get("/console").status_code == 200
        revoked = http.delete(f"/v1/api-keys/{officer['id']}", headers=tenant.auth())
        assert revoked.status_code == 204
        after = http.get("/console")
    assert after.status_code == 303
    assert after.headers["location"] == "/console/sign-in"


def test_an_erasure_key_sees_erasures_but_not_holds(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        privacy = create_key(http, tenant, ["erasure"])
        assert sign_in(http, privacy["secret"]).status_code == 303
        erasures = http.get("/console/erasures")
        holds = http.get("/console/holds")
        log = http.get("/console/access-log")
    assert erasures.status_code == 200
    assert holds.status_code == 403
    assert log.status_code == 403


def test_bad_form_input_is_a_page_with_the_field_errors_not_a_500(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        sign_in(http, _officer(http, tenant)["secret"])
        token = signed_in_token(http)
        bad = http.post(
            "/console/holds/new",
            data={
                "csrf_token": token,
                "reason": "whim",
                "reference": "",
                "expires_at": "2001-01-01T00:00",
                "subject_ref": "x" * 201,
            },
        )
        too_big = http.post(
            "/console/holds/new", data={"csrf_token": token, "note": "n" * (64 * 1024)}
        )
        bad_ip = http.get("/console/access-log", params={"ip": "not-an-ip"})
        bad_id = http.get("/console/holds/not-a-uuid")
    assert bad.status_code == 422
    for field in ("reason", "reference", "expires_at", "subject_ref"):
        assert f'id="{field}-error"' in bad.text, field
    assert too_big.status_code == 413
    assert bad_ip.status_code == 422
    assert 'id="ip-error"' in bad_ip.text
    assert bad_id.status_code == 404


def test_the_language_switch_only_returns_to_console_pages(server: ServerThread) -> None:
    with server.client() as http:
        home = http.get("/console/language", params={"set": "nl", "next": "/console/holds"})
        away = http.get("/console/language", params={"set": "nl", "next": "https://evil.example/"})
        sneaky = http.get("/console/language", params={"set": "nl", "next": "//evil.example/x"})
        odd = http.get("/console/language", params={"set": "xx", "next": "/console"})
        dutch = http.get("/console/sign-in")
    assert home.status_code == 303
    assert home.headers["location"] == "/console/holds"
    assert away.headers["location"] == "/console"
    assert sneaky.headers["location"] == "/console"
    assert "set-cookie" not in odd.headers
    assert '<html lang="nl">' in dutch.text
    assert "Aanmelden" in dutch.text


def test_only_the_two_static_files_are_served(server: ServerThread) -> None:
    with server.client() as http:
        css = http.get("/console/static/console.css")
        js = http.get("/console/static/htmx.min.js")
        other = http.get("/console/static/..%2Fi18n.py")
        missing = http.get("/console/static/sessions.py")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert js.status_code == 200
    assert other.status_code == 404
    assert missing.status_code == 404


def test_the_console_is_not_in_the_api_description(server: ServerThread) -> None:
    with server.client() as http:
        paths = http.get("/openapi.json").json()["paths"]
        served = http.get("/console/sign-in")
    assert served.status_code == 200
    assert [p for p in paths if p.startswith("/console")] == []


def test_field_errors_read_in_the_visitors_language(server: ServerThread, tenant: Tenant) -> None:
    dutch = {"Accept-Language": "nl-NL,nl;q=0.9"}
    with server.client() as http:
        sign_in(http, _officer(http, tenant)["secret"])
        token = signed_in_token(http)
        bad = http.post(
            "/console/holds/new",
            data={"csrf_token": token, "reason": "whim", "reference": ""},
            headers=dutch,
        )
    assert bad.status_code == 422
    assert "Kies een van de grondslagen." in bad.text
    assert "Geef een zaakreferentie van 1 tot 200 tekens." in bad.text


def test_signing_in_again_ends_the_previous_session(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        key = _officer(http, tenant)
        form = http.get("/console/sign-in")
        pre_session = http.cookies.get("dv_console_presession")
        data = {"csrf_token": form_token(form.text), "api_key": key["secret"]}
        http.post("/console/sign-in", data=data)
        first = http.cookies.get("dv_console_session")
        # A second sign-in from the same browser (say, a tab left on the sign-in page).
        http.cookies.set("dv_console_presession", str(pre_session), path="/console")
        again = http.post("/console/sign-in", data=data)
        second = http.cookies.get("dv_console_session")
    assert again.status_code == 303
    assert first and second and first != second
    with server.client(cookies={"dv_console_session": str(first)}) as replay:
        assert replay.get("/console").status_code == 303
    with server.client(cookies={"dv_console_session": str(second)}) as current:
        assert current.get("/console").status_code == 200


def test_csv_download_stops_at_its_row_limit(
    server: ServerThread, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The limit is 10,000 rows; the same code path is checked at its edge with a small one.
    monkeypatch.setattr(access, "CSV_MAX_ROWS", 3)
    ip = "192.0.2.150"
    with server.client() as http:
        officer = _officer(http, tenant)
        for _ in range(3):
            http.get("/v1/holds", headers={**auth(officer), **from_ip(ip)})
        sign_in(http, officer["secret"])
        exactly = http.get("/console/access-log.csv", params={"ip": ip})
        http.get("/v1/holds", headers={**auth(officer), **from_ip(ip)})
        over = http.get("/console/access-log.csv", params={"ip": ip})
        bad = http.get("/console/access-log.csv", params={"ip": "nope"})
    assert exactly.status_code == 200
    assert exactly.headers["content-type"].startswith("text/csv")
    assert len(exactly.text.splitlines()) == 1 + 3
    assert len(over.text.splitlines()) == 1 + 3  # the newest three of four
    assert bad.status_code == 422


def test_the_holds_page_filters_by_reason(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        officer = _officer(http, tenant)
        for reason, reference in (("billing", "INV-77"), ("litigation", "LIT-77")):
            placed = http.post(
                "/v1/holds",
                json={"reason": reason, "reference": reference},
                headers=auth(officer),
            )
            assert placed.status_code == 201
        sign_in(http, officer["secret"])
        page = http.get("/console/holds", params={"reason": "litigation"})
    assert page.status_code == 200
    assert "LIT-77" in page.text and "INV-77" not in page.text
    assert '<option value="litigation" selected>' in page.text


def test_error_pages_speak_the_visitors_language(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        sign_in(http, _officer(http, tenant)["secret"])
        english = http.get(f"/console/holds/{uuid.uuid4()}")
        dutch = http.get(f"/console/holds/{uuid.uuid4()}", headers={"Accept-Language": "nl"})
    assert english.status_code == dutch.status_code == 404
    assert "Not found (or not in this tenant)." in english.text
    assert "Niet gevonden (of niet van deze tenant)." in dutch.text
    assert "Not found (or not in this tenant)." not in dutch.text
