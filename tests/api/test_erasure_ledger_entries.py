"""What the shred ledger says of an erasure is built once, in SQL (dv_erasure_identity,
migration 0040): the request statement writes its own `erasure_request` entry (issue 19,
fifth round), a cancellation records through the same function, and the executor's
`erasure` entry takes its identity from it too. Both restore replays read these fields
(ledger_instructions.replay, ledger_controls.replay_controls), so the two kinds must agree
with each other and with the database, and read as the entries written before did
(Python's isoformat of UTC times): a ledger holds entries of both ages."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from tests.api.helpers import auth, create_key, parse_time, put_record
from tests.jobs import run_worker_pass
from tests.support import ServerThread, Tenant, make_tenant

IDENTITY = {
    "erasure_id", "subject_ref_hash", "subject_id", "from_generation", "generation",
    "requested_at", "requested_by", "not_before", "due_at",
}  # fmt: skip


@pytest.fixture
def tenant(quiet_vault: ServerThread) -> Tenant:
    return make_tenant(quiet_vault.settings, quiet_vault.database_url)


async def _fetch(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def _entries(database_url: str, erasure_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(kind, fact) of the erasure's instruction entries in the outbox, oldest first."""
    rows = asyncio.run(
        _fetch(
            database_url,
            "SELECT key_kind, fact FROM ledger_outbox"
            " WHERE key_kind IN ('erasure', 'erasure_request') AND key_id = $1 ORDER BY id",
            erasure_id,
        )
    )
    return [(row["key_kind"], json.loads(row["fact"])) for row in rows]


def _as_before(database_url: str, erasure_id: str) -> dict[str, Any]:
    """The identity as the vault's Python code wrote it before 0040 (isoformat of the UTC
    times asyncpg returns, str of ids, hex of the hash): what older entries hold."""
    (row,) = asyncio.run(
        _fetch(database_url, "SELECT * FROM erasures WHERE id = $1", uuid.UUID(erasure_id))
    )
    return {
        "erasure_id": str(row["id"]),
        "subject_ref_hash": bytes(row["subject_ref_hash"]).hex(),
        "subject_id": str(row["subject_id"]) if row["subject_id"] else None,
        "from_generation": row["from_generation"],
        "generation": row["generation"],
        "requested_at": row["requested_at"].isoformat(),
        "requested_by": str(row["requested_by"]),
        "not_before": row["not_before"].isoformat(),
        "due_at": row["due_at"].isoformat(),
    }


def test_the_request_and_shred_entries_say_the_same_of_an_erasure(
    quiet_vault: ServerThread, tenant: Tenant
) -> None:
    with quiet_vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        assert put_record(http, app, "someone", "a", b'{"v": 1}', "support").is_success
        asked = http.post("/v1/subjects/someone/erasure", headers=auth(privacy))
        assert asked.status_code == 202, asked.text
        erasure_id = asked.json()["id"]
        # Durable before the answer: the request's own statement wrote it.
        ((kind, requested),) = _entries(quiet_vault.database_url, erasure_id)
        assert kind == "erasure_request"
        assert {k: requested[k] for k in ("status", "braked")} == {
            "status": "scheduled", "braked": False,
        }  # fmt: skip
        before_shred = _as_before(quiet_vault.database_url, erasure_id)
        run_worker_pass(quiet_vault)
        shown = http.get(f"/v1/erasures/{erasure_id}", headers=auth(privacy)).json()
    assert shown["status"] == "completed", shown
    kinds = _entries(quiet_vault.database_url, erasure_id)
    (shredded,) = [fact for kind, fact in kinds if kind == "erasure"]
    assert {k: shredded[k] for k in IDENTITY} == {k: requested[k] for k in IDENTITY}
    assert set(requested) == IDENTITY | {"status", "braked"}
    assert set(shredded) == IDENTITY | {"items"}
    assert {k: requested[k] for k in IDENTITY} == before_shred
    for name in ("requested_at", "not_before", "due_at"):
        assert parse_time(shown[name]) == datetime.fromisoformat(requested[name])


def test_a_cancellation_is_recorded_through_the_same_function(
    quiet_vault: ServerThread, tenant: Tenant
) -> None:
    with quiet_vault.client() as http:
        graced = http.patch(
            "/v1/tenant/settings", json={"erasure_grace_hours": 24}, headers=tenant.auth()
        )
        assert graced.status_code == 200, graced.text
        privacy = create_key(http, tenant, ["erasure"])
        erasure_id = http.post("/v1/subjects/nobody/erasure", headers=auth(privacy)).json()["id"]
        cancelled = http.post(f"/v1/erasures/{erasure_id}/cancel", headers=auth(privacy))
        assert cancelled.status_code == 200, cancelled.text
    entries = _entries(quiet_vault.database_url, erasure_id)
    assert [(kind, fact["status"]) for kind, fact in entries] == [
        ("erasure_request", "scheduled"), ("erasure_request", "cancelled"),
    ]  # fmt: skip
    expected = _as_before(quiet_vault.database_url, erasure_id)
    assert expected["subject_id"] is None  # never seen: no subject row
    for _, fact in entries:
        assert {k: fact[k] for k in IDENTITY} == expected


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 12, 6, 14, 20, 0, tzinfo=UTC),
        datetime(2026, 12, 6, 14, 20, 0, 1, tzinfo=UTC),
        datetime(2027, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ],
    ids=["whole-second", "one-microsecond", "last-microsecond"],
)
def test_ledger_times_read_as_the_entries_written_before(
    quiet_vault: ServerThread, moment: datetime
) -> None:
    """Whatever the session's time zone: the vault's sessions may run in any."""

    async def formatted() -> str:
        conn = await asyncpg.connect(quiet_vault.database_url)
        try:
            await conn.execute("SET TIME ZONE 'America/St_Johns'")
            return str(await conn.fetchval("SELECT dv_ledger_time($1)", moment))
        finally:
            await conn.close()

    assert asyncio.run(formatted()) == moment.isoformat()


def test_an_unknown_erasure_cannot_be_recorded(quiet_vault: ServerThread, tenant: Tenant) -> None:
    """The cancellation's record fails closed: an erasure this transaction cannot see
    (another tenant's, or none) raises, never a silent gap in the ledger."""
    from vault.db.database import Database
    from vault.services.ledger_controls import record_erasure_request

    async def attempt() -> None:
        db = await Database.connect(quiet_vault.database_url, max_size=1)
        try:
            async with db.tenant_tx(tenant.id) as conn:
                await record_erasure_request(conn, tenant.id, uuid.uuid4())
        finally:
            await db.close()

    with pytest.raises(AssertionError):
        asyncio.run(attempt())
