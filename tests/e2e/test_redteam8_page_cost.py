"""Red team 8: what holding a page's keys costs at the page's limit.

A listing of a subject's artefacts holds every key its page decrypts with in one
statement (TransferLease.hold_keys, migration 0038), and its access-log commit confirms
each of those holds one by one (dv_access_log_chain_holding, migration 0035): a
500-item page is 500 confirmations in that commit. Measured on two shared cores,
7 reads each, alternated with the code before answer-holds (c8af397): 500 items
~64 ms here against ~100-124 ms before (one statement replaced 500 key reads), 50 items
~12-14 ms against ~17-21 ms, 1 item ~7-11 ms against ~4-7 ms. No cliff; this test keeps
the edge: 500 is one hold statement and answers, 501 is refused before anything is read.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.api.helpers import auth, create_key, subject_url, uploaded
from tests.support import ServerThread, make_tenant
from vault.http.models.common import MAX_LIMIT
from vault.services import transfers as transfer_service

UPLOADERS = 4


class _CountedQueries:
    def __init__(self, real: Any) -> None:
        self._real = real
        self.holds = 0

    def __getattr__(self, name: str) -> str:
        if name == "hold_keys":
            self.holds += 1
        return str(getattr(self._real, name))


def test_a_page_at_the_limit_holds_its_keys_in_one_statement_and_one_past_it_is_refused(
    quiet_vault: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = make_tenant(quiet_vault.settings, quiet_vault.database_url)
    ref = f"page-{uuid.uuid4().hex[:8]}"
    with quiet_vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        # The page's items, uploaded a few at a time: the vault serves them concurrently
        # (its commits overlap), as it would several clients' uploads.
        with ThreadPoolExecutor(UPLOADERS) as pool:
            list(pool.map(lambda n: uploaded(http, app, ref, b"x", filename=f"item-{n}.txt"),
                          range(MAX_LIMIT)))  # fmt: skip
        counted = _CountedQueries(transfer_service.Q)
        monkeypatch.setattr(transfer_service, "Q", counted)
        started = time.perf_counter()
        page = http.get(
            subject_url(ref, "artefacts"), params={"limit": MAX_LIMIT}, headers=auth(app)
        )
        took = time.perf_counter() - started
        assert page.status_code == 200, page.text
        assert len(page.json()["items"]) == MAX_LIMIT
        assert counted.holds == 1
        assert took < 5.0, took  # ~65 ms measured; generous for a loaded machine
        past = http.get(
            subject_url(ref, "artefacts"), params={"limit": MAX_LIMIT + 1}, headers=auth(app)
        )
        assert past.status_code == 422, past.text
        assert past.headers["content-type"].startswith("application/problem+json")
        assert counted.holds == 1
