"""Answers with decrypted metadata hold their keys in one statement (migration 0038,
TransferLease.hold_keys): only live keys are held and returned, and no such answer leaves
a hold behind once it is out. That a held key keeps an erasure from completing while the
answer waits: tests/e2e/test_answers_hold_their_keys.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.api.helpers import (
    artefact_url,
    auth,
    create_key,
    put_record,
    rfc3339,
    subject_url,
    uploaded,
    wait_for,
)
from tests.jobs import run_worker_pass
from tests.support import ServerThread, Tenant, make_tenant, private_server
from vault.services.transfers import HELD_FOR_SECONDS


@pytest.fixture(scope="module")
def vault(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with private_server(pg_admin_url, tmp_path_factory.mktemp("answer-holds-batch")) as server:
        yield server


def _query(server: ServerThread, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(server.database_url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def _held_rows(server: ServerThread, tenant: Tenant) -> int:
    rows = _query(server, "SELECT count(*) FROM transfer_keys WHERE tenant_id = $1", tenant.id)
    return int(rows[0][0])


def _data_key(server: ServerThread, artefact_id: str) -> uuid.UUID:
    rows = _query(server, "SELECT data_key_id FROM artefacts WHERE id = $1", uuid.UUID(artefact_id))
    key: uuid.UUID = rows[0][0]
    return key


def test_one_statement_holds_the_live_keys_only(vault: ServerThread) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        kept = [uploaded(http, app, "batch-held", b"x")["id"] for _ in range(3)]
        deleted = uploaded(http, app, "batch-held", b"y")["id"]
        gone = http.delete(artefact_url("batch-held", deleted), headers=auth(app))
        assert gone.status_code == 204, gone.text
    live = [_data_key(vault, artefact) for artefact in kept]
    shredded = _data_key(vault, deleted)
    other = make_tenant(vault.settings, vault.database_url)
    transfer = uuid.uuid4()

    held = _query(
        vault, "SELECT * FROM dv_transfer_hold_keys($1, $2, $3, $4, false)",
        tenant.id, transfer, [*live, shredded, uuid.uuid4()], HELD_FOR_SECONDS,
    )  # fmt: skip
    rows = _query(vault, "SELECT data_key_id FROM transfer_keys WHERE transfer_id = $1", transfer)
    # Another tenant's call names the same keys: row-level security finds none of them.
    foreign = _query(
        vault, "SELECT * FROM dv_transfer_hold_keys($1, $2, $3, $4, true)",
        other.id, uuid.uuid4(), live, HELD_FOR_SECONDS,
    )  # fmt: skip

    assert sorted(row["id"] for row in held) == sorted(live)
    assert all(row["wrapped_key"] is not None for row in held)
    assert sorted(row["data_key_id"] for row in rows) == sorted(live)
    assert foreign == []


def test_no_answer_with_decrypted_metadata_leaves_a_hold_behind(vault: ServerThread) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    ref = f"metadata-{uuid.uuid4().hex[:8]}"
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"])
        privacy = create_key(http, tenant, ["erasure"])
        artefact = uploaded(http, app, ref, b"x" * 1000, filename="holiday.mp4")
        assert put_record(http, app, ref, "profile", b"{}").status_code == 201
        recorded = http.post(
            "/v1/disclosures",
            json={
                "subject_ref": ref, "recipient": "R", "legal_basis": "L", "reference": "P",
                "categories": ["account"], "description": "the holiday video",
                "disclosed_at": rfc3339(datetime.now(UTC) - timedelta(days=1)),
            },
            headers=auth(officer),
        )  # fmt: skip
        assert recorded.status_code == 201, recorded.text
        answers = [
            http.get(subject_url(ref, "artefacts"), headers=auth(app)),
            http.get(artefact_url(ref, artefact["id"]), headers=auth(app)),
            http.head(artefact_url(ref, artefact["id"], "content"), headers=auth(app)),
            http.get("/v1/disclosures", headers=auth(officer)),
            http.get(recorded.headers["location"], headers=auth(officer)),
            http.get(subject_url(ref, "export"), headers=auth(app)),
        ]
        assert [a.status_code for a in answers] == [200] * len(answers)
        assert answers[0].json()["items"][0]["filename"] == "holiday.mp4"
        assert "holiday.mp4" in answers[2].headers["content-disposition"]
        assert answers[3].json()["items"][0]["description"] == "the holiday video"
        released = wait_for(lambda: _held_rows(vault, tenant) == 0, timeout=5, interval=0.05)
        erasure = http.post(subject_url(ref, "erasure"), headers=auth(privacy))
        assert erasure.status_code == 202, erasure.text
        run_worker_pass(vault)
        status = http.get(f"/v1/erasures/{erasure.json()['id']}", headers=auth(privacy))
        after = http.get("/v1/disclosures", headers=auth(officer)).json()["items"][0]
    assert released
    assert status.json()["status"] == "completed"
    # The description's key went with the erasure: the answer says so, with no text.
    assert after["description"] is None and after["description_erased"] is True
