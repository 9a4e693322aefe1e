"""The console in Chromium as a compliance officer meets it: a disclosure recorded beside
its hold and listed on the subject's page, the reference just typed shown after placing
a hold, navigation by the key's scopes, every page without a blocked inline style or a
failed load, on a phone-width screen without sideways scrolling, in both languages.
Pages are photographed to test-output/console/<page>-<locale>.png."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, expect

from tests.api.helpers import auth, put_record
from tests.console.browser_support import PHONE, World, new_context, shot, sign_in_page

# Reported by the page itself, so a violation from any source (markup, htmx, the
# stylesheet) shows up as a console error this test can see.
_REPORT_CSP = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI} ${e.sample}`);
});
"""


def _watch(page: Page) -> list[str]:
    """Console errors of the page, and every load that failed (favicon included)."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    return problems


def _subject_with_hold(world: World, ref: str) -> dict[str, Any]:
    with httpx.Client(base_url=world.base_url) as http:
        written = put_record(http, world.app, ref, "profile", b'{"plan": "pro"}')
        assert written.status_code == 201, written.text
        placed = http.post(
            "/v1/holds",
            json={"subject_ref": ref, "reason": "law_enforcement", "reference": "PV-BROWSER",
                  "categories": ["account"]},
            headers=auth(world.officer),
        )  # fmt: skip
        assert placed.status_code == 201, placed.text
        hold: dict[str, Any] = placed.json()
        return hold


def test_a_disclosure_recorded_beside_its_hold_shows_on_the_subjects_page(
    browser: Browser, world: World
) -> None:
    hold = _subject_with_hold(world, "browser-disclosed")
    for locale, lang in (("en-GB", "en"), ("nl-NL", "nl")):
        context = new_context(browser, world, locale=locale)
        page = context.new_page()
        sign_in_page(page, world.officer)
        page.goto(f"/console/holds/{hold['id']}")
        form = page.locator("form[action$='/disclosures']")
        # The form starts from the hold: its case reference and categories.
        expect(form.locator("#disclosure_reference")).to_have_value("PV-BROWSER")
        expect(form.locator("input[value='account']")).to_be_checked()
        form.locator("#recipient").fill(f"Recipient {lang}")
        form.locator("#legal_basis").fill("Art. 126nd Sv")
        form.locator("#description").fill(f"profile data, {lang}")
        # The date in the page's language: day first on a Dutch page.
        form.locator("#disclosed_at").fill(
            "03-05-2024 09:15" if lang == "nl" else "2024-05-03 09:15"
        )
        form.get_by_role("button").click()
        expect(page.get_by_role("status")).to_contain_text(
            "De verstrekking is vastgelegd." if lang == "nl" else "The disclosure is recorded."
        )
        table = page.locator("table.disclosures")
        expect(table).to_contain_text(f"Recipient {lang}")
        expect(table).to_contain_text(
            "03-05-2024 09:15 UTC" if lang == "nl" else "2024-05-03 09:15 UTC"
        )
        shot(page, "hold-disclosures", lang)
        page.goto("/console/subjects")
        page.locator("#ref").fill("browser-disclosed")
        page.locator("main form button").click()
        listed = page.locator("#subject-disclosures").locator("..")
        expect(listed).to_contain_text(f"Recipient {lang}")
        expect(listed).to_contain_text(f"profile data, {lang}")
        shot(page, "subject-disclosures", lang)
        context.close()


def test_the_reference_just_typed_shows_once_after_placing_a_hold(
    browser: Browser, world: World
) -> None:
    context = new_context(browser, world)
    page = context.new_page()
    sign_in_page(page, world.officer)
    page.goto("/console/holds/new")
    page.get_by_label("Subject reference").fill("browser-typed 42")
    page.get_by_label("Reason").select_option("fraud_investigation")
    page.get_by_label("Case reference").fill("TYPED-BROWSER")
    page.get_by_role("button", name="Place a hold").click()
    expect(page.get_by_role("status")).to_contain_text("The hold is placed")
    expect(page.locator("#typed-ref")).to_have_text("browser-typed 42")
    assert "browser-typed" not in page.url
    shot(page, "hold-placed")
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_contain_text("TYPED-BROWSER")
    expect(page.locator("#typed-ref")).to_have_count(0)
    assert all(c["name"] != "dv_console_typed_ref" for c in context.cookies())
    context.close()


def test_an_erasure_key_is_shown_only_what_it_may_open(browser: Browser, world: World) -> None:
    context = new_context(browser, world)
    page = context.new_page()
    problems = _watch(page)
    sign_in_page(page, world.privacy)
    nav = page.get_by_role("navigation")
    expect(nav.get_by_role("link")).to_have_text(["Dashboard", "Erasures"])
    nav.get_by_role("link", name="Erasures").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Erasures")
    assert problems == [], problems
    context.close()


def _every_page(page: Page, hold_id: str, ref: str) -> Iterator[str]:
    """Open every kind of console page in turn, by address or by link; yield each one's
    name while it is open."""
    for path, name in (
        ("/console", "dashboard"),
        ("/console/holds?active=false", "holds"),
        ("/console/holds/new", "hold-new"),
        (f"/console/holds/{hold_id}", "hold"),
        ("/console/erasures", "erasures"),
        ("/console/access-log", "access-log"),
        ("/console/no-such-page", "not-found"),
    ):
        page.goto(path)
        expect(page.get_by_role("heading", level=1)).not_to_be_empty()
        yield name
    page.goto("/console/erasures")
    page.locator("table a").first.click()
    expect(page.locator("#receipt")).to_be_visible()
    yield "erasure"
    page.goto("/console/subjects")
    page.locator("#ref").fill(ref)
    page.locator("main form button").click()
    expect(page.locator("#subject-disclosures")).to_be_visible()
    yield "subject"


def test_no_page_blocks_an_inline_style_or_fails_a_load(browser: Browser, world: World) -> None:
    hold = _subject_with_hold(world, "browser-csp")
    with httpx.Client(base_url=world.base_url) as http:
        http.post("/v1/subjects/browser-csp/erasure", headers=auth(world.privacy))
    for locale in ("en-GB", "nl-NL"):
        context = new_context(browser, world, locale=locale)
        context.add_init_script(_REPORT_CSP)
        page = context.new_page()
        problems = _watch(page)
        sign_in_page(page, world.officer)
        visited = list(_every_page(page, hold["id"], "browser-csp"))
        assert len(visited) == 9
        # Only the deliberate 404 page; no CSP violation, no missing favicon.
        assert [p for p in problems if "no-such-page" not in p and "404 (Not Found)" not in p] == []
        assert not [p for p in problems if "CSP violation" in p]
        context.close()


def test_a_phone_width_screen_never_scrolls_sideways(browser: Browser, world: World) -> None:
    hold = _subject_with_hold(world, "browser-phone")
    with httpx.Client(base_url=world.base_url) as http:
        http.post("/v1/subjects/browser-phone/erasure", headers=auth(world.privacy))
    for locale, lang in (("en-GB", "en"), ("nl-NL", "nl")):
        context = new_context(browser, world, locale=locale, viewport=PHONE)
        page = context.new_page()
        sign_in_page(page, world.officer)
        overflowing = {}
        for name in _every_page(page, hold["id"], "browser-phone"):
            widths = page.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
            )
            if widths[0] > widths[1]:
                overflowing[name] = widths
            shot(page, f"phone-{name}", lang)
        assert overflowing == {}
        # A table wider than the screen scrolls inside its own box.
        page.goto("/console/holds?active=false")
        box = page.locator(".scroll").first
        assert box.evaluate("e => e.scrollWidth > e.clientWidth")
        assert box.evaluate("e => getComputedStyle(e).overflowX") == "auto"
        context.close()


def test_date_fields_follow_the_page_not_the_browser(browser: Browser, world: World) -> None:
    """A Dutch browser on an English page (and the reverse): the date field and its
    example follow the page."""
    for locale, switch, dashboard, example in (
        ("nl-NL", "English", "Dashboard", "e.g. 2025-03-01 14:30"),
        ("en-GB", "Nederlands", "Overzicht", "bijv. 01-03-2025 14:30"),
    ):
        context = new_context(browser, world, locale=locale)
        page = context.new_page()
        sign_in_page(page, world.officer)
        page.get_by_role("link", name=switch).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(dashboard)
        page.goto("/console/holds/new")
        field = page.locator("#expires_at")
        expect(field).to_have_attribute("type", "text")
        expect(page.locator("#expires_at-hint")).to_have_text(example)
        context.close()
