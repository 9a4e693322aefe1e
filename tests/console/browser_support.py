"""What the console's browser tests share: Debian's Chromium headless shell driven by
Playwright (its own browser download is not used), a tenant with a key per role,
screenshots of every page to test-output/console/<page>-<locale>.png for review."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.support import ServerThread, Tenant

SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "console"
# Chromium's headless shell (Debian's chromium-headless-shell, built from the same source
# as its chromium): the same Blink and V8 without a browser window around each page. In
# full Chromium every Playwright context is a window with its toolbar and a preloaded
# omnibox popup (a WebUI page in a renderer of its own); the three browser modules took
# 72 s of CPU there and 40 s here, with the same pages, assertions and screenshots.
CHROMIUM = "/usr/bin/chromium-headless-shell"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# A phone held upright (an iPhone SE's CSS pixels).
PHONE = {"width": 375, "height": 667}


@dataclass(frozen=True)
class World:
    server: ServerThread
    base_url: str
    database_url: str
    tenant: Tenant
    officer: dict[str, Any]
    second_officer: dict[str, Any]
    privacy: dict[str, Any]
    app: dict[str, Any]


def in_thread(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine on its own loop in another thread: Playwright's sync API owns the
    event loop of this one."""
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(asyncio.run(make())))
    worker.start()
    worker.join()
    return result[0] if result else None


def new_context(
    browser: Browser, world: World, locale: str = "en-GB", **options: Any
) -> BrowserContext:
    context = browser.new_context(
        base_url=world.base_url, locale=locale, accept_downloads=True, **options
    )
    context.set_default_timeout(15_000)
    return context


def shot(page: Page, name: str, locale: str = "en") -> None:
    # caret="initial": hiding the caret injects a style that the page's CSP refuses.
    page.screenshot(path=str(SHOTS / f"{name}-{locale}.png"), full_page=True, caret="initial")


def sign_in_page(page: Page, key: dict[str, Any]) -> None:
    page.goto("/console/sign-in")
    page.get_by_label(re.compile("API key|API-sleutel")).fill(key["secret"])
    page.get_by_role("button", name=re.compile("Sign in|Aanmelden")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile("Dashboard|Overzicht"))
