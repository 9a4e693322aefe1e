"""Red team 8: a listing whose keys are shredded between reading its page and holding the
page's keys (TransferLease.hold_keys, migration 0038): the hold finds them gone, nothing
is decrypted under them, and the page is read again, up to HELD_READ_ATTEMPTS times.

The window between the page's read and the hold is fixed on purpose: the vault runs in
this process, and its `hold_keys` statement, when armed, first waits (blocking that
vault's loop) for a shred done through a second vault on the same database. What held
is asserted (these tests pass): no plaintext of a shredded item, no loop, no 500, the
access log truthful, no hold row left behind.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.helpers import access_log, auth, create_key, subject_url, uploaded, wait_for
from tests.jobs import run_worker_pass
from tests.support import ServerThread, Tenant, make_tenant, running_server
from vault.services import transfers as transfer_service
from vault.services.transfers import HELD_READ_ATTEMPTS


@pytest.fixture
def tenant(quiet_vault: ServerThread) -> Tenant:
    return make_tenant(quiet_vault.settings, quiet_vault.database_url)


@pytest.fixture
def second_vault(quiet_vault: ServerThread) -> Iterator[ServerThread]:
    """Another vault process on the same database (here: another server thread), which
    serves while the first one's loop is held inside its hold statement."""
    with running_server(quiet_vault.settings, quiet_vault.database_url) as server:
        yield server


class _ShredBeforeHold:
    """transfers.sql as the vault reads it; while armed, each read of `hold_keys` first
    runs `during` (in the vault's own thread: its loop waits for it)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.during: Callable[[], None] | None = None
        self.calls = 0

    def __getattr__(self, name: str) -> str:
        if name == "hold_keys" and self.during is not None:
            self.calls += 1
            self.during()
        return str(getattr(self._real, name))


@pytest.fixture
def shred_before_hold(monkeypatch: pytest.MonkeyPatch) -> Iterator[_ShredBeforeHold]:
    paused = _ShredBeforeHold(transfer_service.Q)
    monkeypatch.setattr(transfer_service, "Q", paused)
    yield paused


async def _hold_rows(database_url: str, tenant_id: uuid.UUID) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        # Row-level security must not hide the rows from this count.
        assert await conn.fetchval(
            "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
        count = await conn.fetchval(
            "SELECT count(*) FROM transfer_keys WHERE tenant_id = $1", tenant_id
        )
        return int(count)
    finally:
        await conn.close()


def _no_holds_left(vault: ServerThread, tenant: Tenant) -> bool:
    import asyncio

    return asyncio.run(_hold_rows(vault.database_url, tenant.id)) == 0


def test_a_listing_whose_items_are_shredded_before_every_hold_answers_410_not_500(
    quiet_vault: ServerThread,
    second_vault: ServerThread,
    tenant: Tenant,
    shred_before_hold: _ShredBeforeHold,
) -> None:
    """Attack: another client of the tenant deletes the newest artefact of a subject
    each time a listing has read its page and before it holds the page's keys (an
    attacker racing a reader, or an unlucky one). Each hold misses a key; the page is
    read again, HELD_READ_ATTEMPTS times.

    Expected (held): 410 problem+json, no filename of a deleted artefact anywhere in the
    answer, the access-log row says 410 and names the subject, and no hold row stays."""
    ref = f"reread-{uuid.uuid4().hex[:8]}"
    with quiet_vault.client() as http, second_vault.client() as other:
        app = create_key(http, tenant, ["ingest", "read"])
        compliance = create_key(http, tenant, ["compliance"])
        items = [
            uploaded(http, app, ref, b"x", filename=f"gone-{n}-{uuid.uuid4().hex}.txt")
            for n in range(HELD_READ_ATTEMPTS + 1)
        ]
        newest_first = [item["id"] for item in reversed(items)]

        def delete_newest() -> None:
            artefact = newest_first.pop(0)
            deleted = other.delete(f"{subject_url(ref, 'artefacts')}/{artefact}", headers=auth(app))
            assert deleted.status_code == 204, deleted.text

        shred_before_hold.during = delete_newest
        request_id = f"reread-{uuid.uuid4().hex}"
        answer = http.get(
            subject_url(ref, "artefacts"),
            params={"limit": 3},
            headers={**auth(app), "X-Request-Id": request_id},
        )
        shred_before_hold.during = None
        assert shred_before_hold.calls == HELD_READ_ATTEMPTS
        assert answer.status_code == 410, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert "gone-" not in answer.text
        # The next listing, undisturbed, is the one item left.
        left = http.get(subject_url(ref, "artefacts"), headers=auth(app))
        assert [item["id"] for item in left.json()["items"]] == [items[0]["id"]]

        def logged() -> list[dict[str, Any]]:
            return [
                row
                for row in access_log(http, compliance, limit=200)
                if row["request_id"] == request_id
            ]

        assert wait_for(lambda: bool(logged()))
        (row,) = logged()
        assert row["status"] == 410
        assert row["subject_ref_hash"], row
        assert wait_for(lambda: _no_holds_left(quiet_vault, tenant), timeout=5)


def test_a_listing_whose_subject_is_erased_between_read_and_hold_shows_nothing_of_it(
    quiet_vault: ServerThread,
    second_vault: ServerThread,
    tenant: Tenant,
    shred_before_hold: _ShredBeforeHold,
) -> None:
    """Attack: the subject's erasure shreds and completes after a listing read its page
    and before it holds the keys. Expected (held): the hold finds the keys gone, the page
    read again lists nothing of the erased generation (200, no filename), the erasure's
    completion did not wait on it, and no hold row stays."""
    ref = f"erased-{uuid.uuid4().hex[:8]}"
    with quiet_vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        marker = f"erased-name-{uuid.uuid4().hex}"
        uploaded(http, app, ref, b"x", filename=f"{marker}.txt")
        # The upload's own hold is released in the vault's loop, which the pause below
        # blocks: let it go first, so the completion has only the listing to wait for.
        assert wait_for(lambda: _no_holds_left(quiet_vault, tenant), timeout=5)
        erasure_ids: list[str] = []

        def erase() -> None:
            # Called in the vault's loop thread (its loop waits): the request goes to the
            # second vault, the worker pass runs its own loop and pool in a thread.
            if erasure_ids:
                return
            with second_vault.client() as side:
                erasure = side.post(subject_url(ref, "erasure"), headers=auth(privacy))
            assert erasure.status_code == 202, erasure.text
            erasure_ids.append(erasure.json()["id"])
            worker = threading.Thread(target=run_worker_pass, args=(quiet_vault,))
            worker.start()
            worker.join(30)

        shred_before_hold.during = erase
        answer_box: dict[str, httpx.Response] = {}

        def listing() -> None:
            with quiet_vault.client() as side:
                answer_box["list"] = side.get(subject_url(ref, "artefacts"), headers=auth(app))

        started = time.monotonic()
        reader = threading.Thread(target=listing)
        reader.start()
        reader.join(30)
        shred_before_hold.during = None
        answer = answer_box["list"]
        assert shred_before_hold.calls >= 1
        assert answer.status_code == 200, answer.text
        assert marker not in answer.text
        assert answer.json()["items"] == []
        status = http.get(f"/v1/erasures/{erasure_ids[0]}", headers=auth(privacy)).json()
        assert status["status"] == "completed", status
        assert time.monotonic() - started < 20
        assert wait_for(lambda: _no_holds_left(quiet_vault, tenant), timeout=5)
