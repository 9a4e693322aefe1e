"""The console in a real browser (Debian's Chromium headless shell driven by Playwright):
sign-in and sign-out, a wrong key, session expiry, CSRF refusal, a hold that keeps an
erasure's data, two-key release, access-log search by CIDR, the Dutch locale, and
keyboard-only use. Every page is photographed to test-output/console/<page>-<locale>.png
for review."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.api.helpers import auth, from_ip, upload
from tests.console.browser_support import (
    World,
    in_thread,
    new_context,
    shot,
    sign_in_page,
)
from tests.jobs import worker_pass
from tests.support import ServerThread


# Its worker passes run on a vault of this module's own (tests/conftest.py `own_vault`):
# on the session's they worked through every erasure and hold queued all session.
@pytest.fixture(scope="module")
def server(own_vault: ServerThread) -> ServerThread:
    return own_vault


def test_sign_in_wrong_key_sign_out_by_keyboard(browser: Browser, world: World) -> None:
    context = new_context(browser, world)
    page = context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.goto("/console")
    expect(page).to_have_url(re.compile("/console/sign-in$"))
    shot(page, "sign-in")
    # Keyboard only: the first Tab reaches the skip link, then the fields in order.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.get_by_label("API key").focus()
    page.keyboard.type("dv_wrong_" + "z" * 43)
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    assert all(c["name"] != "dv_console_session" for c in context.cookies())
    page.get_by_label("API key").fill(world.officer["secret"])
    page.get_by_label("API key").press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    session = next(c for c in context.cookies() if c["name"] == "dv_console_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    # The key is never kept by the browser: not in cookies, not in storage.
    assert world.officer["secret"] not in str(context.storage_state())
    shot(page, "dashboard")
    # A boosted navigation moves focus to the new page's main content, as a load would.
    page.get_by_role("navigation").get_by_role("link", name="Holds").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Legal holds")
    expect(page.locator("main#main")).to_be_focused()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_contain_text("You are signed out")
    page.goto("/console/holds")
    expect(page).to_have_url(re.compile("/console/sign-in$"))
    # htmx runs under the Content-Security-Policy without violating it.
    assert page.evaluate("typeof window.htmx") == "object"
    # The 401 of the wrong key is the one failed load (the page names its favicon, so
    # the browser no longer asks for a /favicon.ico that is not there).
    failed = [m for m in console_errors if m.startswith("Failed to load resource")]
    assert len(failed) == 1 and "401" in failed[0], failed
    problems = [m for m in console_errors if m not in failed]
    assert problems == [], problems
    context.close()


def test_an_idle_session_expires(browser: Browser, world: World) -> None:
    context = new_context(browser, world)
    page = context.new_page()
    sign_in_page(page, world.officer)
    page.goto("/console/holds")
    expect(page.get_by_role("heading", level=1)).to_have_text("Legal holds")

    async def age_sessions() -> None:
        conn = await asyncpg.connect(world.database_url)
        try:
            await conn.execute(
                "UPDATE console_sessions SET last_seen_at = last_seen_at - interval '31 minutes'"
                " WHERE tenant_id = $1",
                world.tenant.id,
            )
        finally:
            await conn.close()

    in_thread(age_sessions)
    page.reload()
    expect(page).to_have_url(re.compile("/console/sign-in$"))
    context.close()


def test_a_form_without_its_csrf_token_is_refused(browser: Browser, world: World) -> None:
    context = new_context(browser, world)
    page = context.new_page()
    sign_in_page(page, world.officer)
    page.goto("/console/holds/new")
    page.get_by_label("Reason").select_option("billing")
    page.get_by_label("Case reference").fill("CSRF-BROWSER")
    page.eval_on_selector("main input[name=csrf_token]", "e => e.remove()")
    page.get_by_role("button", name="Place a hold").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("403 Forbidden")
    expect(page.get_by_role("alert")).to_contain_text("did not come from this console")
    with httpx.Client(base_url=world.base_url) as http:
        holds = http.get("/v1/holds", headers=auth(world.officer)).json()["items"]
    assert "CSRF-BROWSER" not in {h["reference"] for h in holds}
    context.close()


def test_a_placed_hold_keeps_an_erasures_data(browser: Browser, world: World) -> None:
    ref = "browser-kept-1"
    with httpx.Client(base_url=world.base_url, timeout=30) as http:
        assert upload(http, world.app, ref, b"support chat", "support").status_code == 201
        assert upload(http, world.app, ref, b"call", "recording").status_code == 201
    context = new_context(browser, world)
    page = context.new_page()
    sign_in_page(page, world.officer)
    page.get_by_role("link", name="Legal holds").first.click()
    page.get_by_role("link", name="Place a hold").click()
    # Nothing filled in: the errors show beside their fields.
    page.get_by_label("Expires at (UTC)").fill("2001-01-01T00:00")
    page.get_by_role("button", name="Place a hold").click()
    expect(page.locator("#reason-error")).to_be_visible()
    expect(page.locator("#reference-error")).to_be_visible()
    expect(page.locator("#expires_at-error")).to_be_visible()
    expect(page.get_by_label("Reason")).to_have_attribute("aria-invalid", "true")
    shot(page, "hold-new")
    page.get_by_label("Subject reference").fill(ref)
    page.get_by_label("support").check()
    page.get_by_label("Reason").select_option("regulatory")
    page.get_by_label("Case reference").fill("CASE-KEEP")
    page.get_by_label("Expires at (UTC)").fill("")
    page.get_by_role("button", name="Place a hold").click()
    expect(page.get_by_role("status")).to_contain_text("The hold is placed")
    hold_url = page.url

    with httpx.Client(base_url=world.base_url, timeout=30) as http:
        erasure = http.post(f"/v1/subjects/{ref}/erasure", headers=auth(world.privacy)).json()
        receipt_url = f"/v1/erasures/{erasure['id']}/receipt"
        in_thread(lambda: worker_pass(world.server))
        assert http.get(receipt_url, headers=auth(world.privacy)).status_code == 200
    page.get_by_role("link", name="Erasures").click()
    page.get_by_label("Status").select_option("held")
    page.get_by_role("button", name="Filter").click()
    shot(page, "erasures")
    page.locator(f"a[href='/console/erasures/{erasure['id']}']").click()
    kept = page.locator("ul.kept")
    expect(kept).to_contain_text("support: kept by hold")
    expect(page.locator("#shredded").locator("..")).to_contain_text("recording")
    expect(page.locator("#receipt-check")).to_contain_text(
        "The signature verifies against the published key"
    )
    shot(page, "erasure")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the signed receipt (JSON)").click()
    assert download.value.suggested_filename == f"erasure-receipt-{erasure['id']}.json"
    kept.get_by_role("link").click()
    expect(page).to_have_url(hold_url.split("?")[0])
    expect(page.locator("#impact").locator("..")).to_contain_text("support")
    shot(page, "hold")
    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator("#per-category").locator("..")).to_contain_text("support")
    page.get_by_role("link", name="Subjects").click()
    shot(page, "subjects")
    page.get_by_label("Subject reference").fill(ref)
    page.get_by_role("button", name="Look up").click()
    expect(page.locator("#subject-holds").locator("..")).to_contain_text("CASE-KEEP")
    shot(page, "subject")
    context.close()


def test_litigation_hold_release_takes_two_officers(browser: Browser, world: World) -> None:
    first = new_context(browser, world)
    page = first.new_page()
    sign_in_page(page, world.officer)
    page.goto("/console/holds/new")
    page.get_by_label("Reason").select_option("litigation")
    page.get_by_label("Case reference").fill("LIT-2")
    page.get_by_role("button", name="Place a hold").click()
    expect(page.get_by_role("status")).to_contain_text("The hold is placed")
    hold_path = page.url.split("?")[0]
    page.get_by_label("Reason for the release").fill("case closed")
    page.get_by_role("button", name="Request release").click()
    expect(page.locator(".awaiting")).to_have_text(
        re.compile(
            f"Release requested by {world.officer['prefix']} .*, awaiting a second "
            "compliance officer"
        )
    )
    # The same officer cannot confirm their own request.
    page.get_by_label("Reason for the release").fill("again")
    page.get_by_role("button", name="Confirm release").click()
    expect(page.locator("#release_reason-error")).to_contain_text("a second person")
    first.close()

    second = new_context(browser, world)
    page = second.new_page()
    sign_in_page(page, world.second_officer)
    page.goto(hold_path)
    page.get_by_label("Reason for the release").fill("confirmed: case closed")
    page.get_by_role("button", name="Confirm release").click()
    expect(page.locator("dl.facts")).to_contain_text("released")
    journal = page.locator("#journal").locator("..")
    expect(journal).to_contain_text("release requested")
    expect(journal).to_contain_text(world.second_officer["prefix"])
    second.close()


def test_access_log_search_by_cidr_and_csv(browser: Browser, world: World) -> None:
    with httpx.Client(base_url=world.base_url) as http:
        for ip in ("203.0.113.5", "203.0.113.77", "198.51.100.9"):
            headers = {**auth(world.officer), **from_ip(ip)}
            assert http.get("/v1/holds", headers=headers).status_code == 200
    context = new_context(browser, world)
    page = context.new_page()
    sign_in_page(page, world.officer)
    page.get_by_role("link", name="Access log").click()
    page.get_by_label("IP address or CIDR").fill("203.0.113.0/24")
    page.get_by_role("button", name="Search").click()
    results = page.locator("table.log")
    expect(results).to_contain_text("203.0.113.5")
    expect(results).to_contain_text("203.0.113.77")
    expect(results).not_to_contain_text("198.51.100.9")
    page.get_by_role("button", name="Verify the chain now").click()
    expect(page.locator("#chain-result")).to_contain_text("disclosures intact")
    shot(page, "access-log")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download this search as CSV").click()
    csv_text = Path(download.value.path()).read_text("utf-8")
    assert csv_text.splitlines()[0].startswith("at,api_key_id,key_prefix,ip")
    assert "203.0.113.5" in csv_text
    assert "198.51.100.9" not in csv_text
    context.close()


def test_dutch_from_accept_language_and_the_switch(browser: Browser, world: World) -> None:
    context = new_context(browser, world, locale="nl-NL")
    page = context.new_page()
    page.goto("/console/sign-in")
    expect(page.locator("html")).to_have_attribute("lang", "nl")
    expect(page.get_by_role("heading", level=1)).to_have_text("Aanmelden")
    shot(page, "sign-in", "nl")
    sign_in_page(page, world.officer)
    shot(page, "dashboard", "nl")
    for path, name, heading in (
        ("/console/holds?active=false", "holds", "Bewaarplichten"),
        ("/console/holds/new", "hold-new", "Bewaarplicht opleggen"),
        ("/console/erasures", "erasures", "Verwijderingen"),
        ("/console/subjects", "subjects", "Betrokkenen"),
        ("/console/access-log", "access-log", "Toegangslog"),
    ):
        page.goto(path)
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        shot(page, name, "nl")
    page.goto("/console/holds?active=false")
    page.locator("table a").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Bewaarplicht")
    shot(page, "hold", "nl")
    page.goto("/console/erasures")
    page.locator("table a").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Verwijdering")
    shot(page, "erasure", "nl")
    page.goto("/console/subjects")
    page.get_by_label("Referentie van de betrokkene").fill("browser-kept-1")
    page.get_by_role("button", name="Opzoeken").click()
    shot(page, "subject", "nl")
    # The switch on every page: back to English, and it sticks.
    page.get_by_role("link", name="English").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Subjects")
    page.goto("/console/holds")
    expect(page.get_by_role("heading", level=1)).to_have_text("Legal holds")
    shot(page, "holds")
    context.close()
