"""Fixtures of the console's browser tests (tests/console/browser_support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.api.helpers import create_key, operator_key
from tests.console.browser_support import CHROMIUM, CHROMIUM_ARGS, SHOTS, World
from tests.support import ServerThread, make_tenant


@pytest.fixture(scope="module")
def world(server: ServerThread) -> World:
    """The console's cast on the vault the module talks to (the session's, or its own)."""
    tenant = make_tenant(server.settings, server.database_url)
    with server.client() as http:
        return World(
            server=server,
            base_url=server.base_url,
            database_url=server.database_url,
            tenant=tenant,
            officer=create_key(http, tenant, ["compliance"]),
            # Another person: the operator issued this key, the tenant's admin did not.
            second_officer=operator_key(server, tenant, ["compliance"], "second-officer"),
            privacy=create_key(http, tenant, ["erasure"]),
            app=create_key(http, tenant, ["ingest", "read"]),
        )


@pytest.fixture(scope="module")
def browser(world: World) -> Iterator[Browser]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()
