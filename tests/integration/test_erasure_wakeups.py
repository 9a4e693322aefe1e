"""The erasure executor and the shred-ledger publisher wake on PostgreSQL notifications
(vault/services/wakeups.py): an erasure completes without waiting for a poll, a hold's
release lets its erasure finish at once, and when a notification is lost (nobody was
listening, or it was never sent) the jobs still find the work: on reconnection, and on
their poll."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.helpers import auth, create_key, put_record, uploaded
from tests.support import ServerThread, make_tenant, new_database, running_server
from vault.config import Settings
from vault.services import wakeups

# Longer than any test here runs: a job that ran after start-up was woken.
NO_POLL = 3600.0
# How long a woken erasure may take on a busy shared machine. The point is that it
# completes at all without a poll; the bench measures how fast (goal: well under 1 s).
WOKEN_WITHIN = 20.0


@pytest.fixture
def vault_without_polls(pg_admin_url: str, tmp_path: Path) -> Iterator[ServerThread]:
    """A vault with its jobs running, on a database of its own, whose erasure executor
    and ledger publisher poll only once an hour."""
    url = new_database(pg_admin_url)
    settings = Settings(data_dir=tmp_path / "data", database_url=url, erasure_poll_seconds=NO_POLL)
    with running_server(settings, url, run_jobs=True) as server:
        _wait_for_listener(url)
        yield server


def _listener_pids(url: str) -> list[int]:
    async def find() -> list[int]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND query LIKE 'LISTEN %datavault_ledger_pending%'"
            )
            return [row["pid"] for row in rows]
        finally:
            await conn.close()

    return asyncio.run(find())


def _wait_for_listener(url: str) -> list[int]:
    deadline = time.monotonic() + 30
    while not (pids := _listener_pids(url)):
        assert time.monotonic() < deadline, "the wake-up listener never connected"
        time.sleep(0.1)
    # Let its first wake-up pass (every job runs once on connection) finish.
    time.sleep(0.5)
    return pids


def _subject_with_data(http: httpx.Client, server: ServerThread) -> tuple[str, Any]:
    tenant = make_tenant(server.settings, server.database_url)
    app = create_key(http, tenant, ["ingest", "read"])
    ref = f"leaver-{uuid.uuid4().hex[:8]}"
    uploaded(http, app, ref, b"a call", category="recording")
    assert put_record(http, app, ref, "profile", b'{"n": 1}').status_code == 201
    return ref, tenant


def _wait_for_status(
    http: httpx.Client, headers: dict[str, str], erasure_id: str, status: str, within: float
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        shown: dict[str, Any] = http.get(f"/v1/erasures/{erasure_id}", headers=headers).json()
        if shown["status"] == status or time.monotonic() > deadline:
            return shown
        time.sleep(0.05)


def _erase(http: httpx.Client, privacy: dict[str, str], ref: str) -> str:
    requested = http.post(f"/v1/subjects/{ref}/erasure", headers=privacy)
    assert requested.status_code == 202, requested.text
    return str(requested.json()["id"])


def test_erasure_completes_on_notifications_without_a_poll(
    vault_without_polls: ServerThread,
) -> None:
    server = vault_without_polls
    with server.client() as http:
        ref, tenant = _subject_with_data(http, server)
        privacy = auth(create_key(http, tenant, ["erasure"]))
        erasure_id = _erase(http, privacy, ref)
        shown = _wait_for_status(http, privacy, erasure_id, "completed", WOKEN_WITHIN)
        receipt = http.get(f"/v1/erasures/{erasure_id}/receipt", headers=privacy)

    assert shown["status"] == "completed", shown
    assert {s["category"] for s in shown["shredded"]} >= {"recording", "account"}
    # Completed means the ledger entry is durable; the receipt names the ledger head.
    assert receipt.status_code == 200, receipt.text
    assert receipt.json()["receipt"]["ledger"]["seq"] >= 1


def test_released_hold_lets_its_erasure_finish_without_a_poll(
    vault_without_polls: ServerThread,
) -> None:
    server = vault_without_polls
    with server.client() as http:
        ref, tenant = _subject_with_data(http, server)
        privacy = auth(create_key(http, tenant, ["erasure"]))
        officer = auth(create_key(http, tenant, ["compliance"]))
        hold = http.post(
            "/v1/holds",
            json={"subject_ref": ref, "categories": ["recording"], "reason": "billing",
                  "reference": "INV-19"},
            headers=officer,
        )  # fmt: skip
        assert hold.status_code == 201, hold.text
        erasure_id = _erase(http, privacy, ref)
        held = _wait_for_status(http, privacy, erasure_id, "held", WOKEN_WITHIN)
        released = http.post(
            f"/v1/holds/{hold.json()['id']}/release", json={"reason": "paid"}, headers=officer
        )
        shown = _wait_for_status(http, privacy, erasure_id, "completed", WOKEN_WITHIN)

    assert held["status"] == "held", held
    assert held["held"] == [{"category": "recording", "hold_ids": [hold.json()["id"]]}]
    assert released.status_code == 200, released.text
    assert shown["status"] == "completed", shown
    assert "recording" in {s["category"] for s in shown["shredded"]}


def test_work_announced_while_nobody_listened_is_found_on_reconnection(
    vault_without_polls: ServerThread,
) -> None:
    """The listener's connection is cut and the erasure requested before it is back: its
    notification reaches nobody, and the reconnected listener wakes the jobs anyway."""
    server = vault_without_polls
    with server.client() as http:
        ref, tenant = _subject_with_data(http, server)
        privacy = auth(create_key(http, tenant, ["erasure"]))
        old = _listener_pids(server.database_url)

        async def cut() -> None:
            conn = await asyncpg.connect(server.database_url)
            try:
                for pid in old:
                    await conn.execute("SELECT pg_terminate_backend($1)", pid)
            finally:
                await conn.close()

        asyncio.run(cut())
        erasure_id = _erase(http, privacy, ref)
        shown = _wait_for_status(http, privacy, erasure_id, "completed", WOKEN_WITHIN)
        new = _listener_pids(server.database_url)

    assert shown["status"] == "completed", shown
    assert new and not set(new) & set(old), "the listener reconnected on a new backend"


class _LostNotifications:
    """Stands in for the wake-up queries: the statement runs, nothing is sent."""

    notify = "SELECT $1::text, $2::text"


def test_erasure_completes_on_the_poll_when_notifications_are_lost(
    pg_admin_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wakeups, "Q", _LostNotifications())
    url = new_database(pg_admin_url)
    settings = Settings(data_dir=tmp_path / "data", database_url=url, erasure_poll_seconds=1.0)
    with running_server(settings, url, run_jobs=True) as server, server.client() as http:
        _wait_for_listener(url)
        ref, tenant = _subject_with_data(http, server)
        privacy = auth(create_key(http, tenant, ["erasure"]))
        erasure_id = _erase(http, privacy, ref)
        shown = _wait_for_status(http, privacy, erasure_id, "completed", WOKEN_WITHIN)

    assert shown["status"] == "completed", shown
    assert {s["category"] for s in shown["shredded"]} >= {"recording", "account"}
