"""Retention never stalls behind held data: expired items a hold keeps, more than one
batch of them, do not stop newer expired items from being shredded; and record versions
a hold kept when they were replaced are shredded once the hold is released.

The job runs here with a moved clock, so these tests have a vault of their own."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.api.helpers import (
    DataKeys,
    artefact_url,
    auth,
    data_keys,
    put_record,
    record_url,
    uploaded,
)
from tests.support import ServerThread, make_tenant, private_server
from vault.runtime import operator_context
from vault.services.keyring import KeyRing
from workers.retention import apply_retention

BATCH = 3  # the job's batch, lowered so that the held items fill more than one


@pytest.fixture(scope="module")
def vault(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """A vault on its own database with no background jobs: only the test runs them."""
    with private_server(pg_admin_url, tmp_path_factory.mktemp("retention") / "data") as server:
        yield server


def _tenant_keys(vault: ServerThread) -> tuple[uuid.UUID, DataKeys]:
    tenant = make_tenant(vault.settings, vault.database_url)
    with vault.client() as http:
        return tenant.id, data_keys(http, tenant)


def _retention(
    vault: ServerThread, *, days_later: int, batch: int = BATCH, failing: uuid.UUID | None = None
) -> int:
    """One retention pass with a moved clock; `failing`: a data key whose destruction
    raises, as a damaged row would."""

    async def run() -> int:
        now = datetime.now(UTC) + timedelta(days=days_later)
        async with operator_context(vault.settings, vault.database_url) as ctx:
            keyring: Any = ctx.keyring if failing is None else _FailingFor(ctx.keyring, failing)
            return await apply_retention(ctx.db, keyring, now=now, batch=batch)

    return asyncio.run(run())


class _FailingFor:
    """The real key ring, except that destroying one data key raises."""

    def __init__(self, real: KeyRing, data_key_id: uuid.UUID) -> None:
        self._real, self._data_key_id = real, data_key_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def destroy_data_key(
        self, conn: Any, tenant_id: uuid.UUID, key_id: uuid.UUID, **options: Any
    ) -> bool:
        if key_id == self._data_key_id:
            raise RuntimeError("damaged row")
        return await self._real.destroy_data_key(conn, tenant_id, key_id, **options)


def _live(vault: ServerThread, data_key_ids: list[uuid.UUID]) -> list[bool]:
    """Whether each data key's wrapped bytes are still there (the owner's view)."""

    async def run() -> list[bool]:
        conn = await asyncpg.connect(vault.database_url)
        try:
            rows = await conn.fetch(
                "SELECT id, wrapped_key IS NOT NULL AS live FROM data_keys WHERE id = ANY($1)",
                data_key_ids,
            )
        finally:
            await conn.close()
        live = {row["id"]: row["live"] for row in rows}
        return [live[key_id] for key_id in data_key_ids]

    return asyncio.run(run())


def _artefact_keys(vault: ServerThread, artefact_ids: list[str]) -> list[uuid.UUID]:
    async def run() -> list[uuid.UUID]:
        conn = await asyncpg.connect(vault.database_url)
        try:
            rows = await conn.fetch(
                "SELECT id, data_key_id FROM artefacts WHERE id = ANY($1)",
                [uuid.UUID(a) for a in artefact_ids],
            )
        finally:
            await conn.close()
        keys = {str(row["id"]): row["data_key_id"] for row in rows}
        return [keys[a] for a in artefact_ids]

    return asyncio.run(run())


def _versions(vault: ServerThread, tenant_id: uuid.UUID, name: str) -> list[dict[str, Any]]:
    """Every version of the tenant's records called `name`: number, current, whether the
    sealed value is still there, its data key."""

    async def run() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(vault.database_url)
        try:
            rows = await conn.fetch(
                "SELECT version, current, value_sealed IS NOT NULL AS sealed, data_key_id"
                " FROM records WHERE tenant_id = $1 AND name = $2 ORDER BY version",
                tenant_id,
                name,
            )
        finally:
            await conn.close()
        return [dict(row) for row in rows]

    return asyncio.run(run())


def _hold(http: Any, keys: DataKeys, ref: str) -> dict[str, Any]:
    response = http.post(
        "/v1/holds",
        json={"subject_ref": ref, "reason": "billing", "reference": "INV-7"},
        headers=auth(keys.compliance),
    )
    assert response.status_code == 201, response.text
    hold: dict[str, Any] = response.json()
    return hold


def test_expired_data_is_shredded_behind_more_held_expired_items_than_one_batch(
    vault: ServerThread,
) -> None:
    held_count = 3 * BATCH + 1
    tenant_id, keys = _tenant_keys(vault)
    with vault.client() as http:
        # The oldest expired items are all held, so they come first in retention's order.
        _hold(http, keys, "held")
        held = [
            uploaded(http, keys.ingest, "held", b"held call", category="recording")["id"]
            for _ in range(held_count)
        ]
        for n in range(held_count):
            put = put_record(http, keys.ingest, "held", f"r{n}", b"1", category="recording")
            assert put.status_code == 201, put.text
        free = uploaded(http, keys.ingest, "free", b"old call", category="recording")["id"]
        assert put_record(http, keys.ingest, "free", "notes", b"2", "recording").status_code == 201
        before = _retention(vault, days_later=89)
        shredded = _retention(vault, days_later=91)
        again = _retention(vault, days_later=91)
        free_content = http.get(artefact_url("free", free, "content"), headers=auth(keys.read))
        free_record = http.get(record_url("free", "notes"), headers=auth(keys.read))
        held_content = http.get(artefact_url("held", held[0], "content"), headers=auth(keys.read))
        held_record = http.get(record_url("held", f"r{held_count - 1}"), headers=auth(keys.read))
    held_keys = _artefact_keys(vault, held)
    held_versions = [_versions(vault, tenant_id, f"r{n}") for n in range(held_count)]
    assert before == 0
    assert shredded == 2 and again == 0
    assert free_content.status_code == 410 and free_record.status_code == 410
    assert held_content.status_code == 200 and held_content.content == b"held call"
    assert held_record.status_code == 200 and held_record.json() == 1
    assert all(_live(vault, held_keys))
    assert all(v[0]["current"] and v[0]["sealed"] for v in held_versions)


def test_a_replaced_version_a_hold_kept_is_shredded_once_the_hold_is_released(
    vault: ServerThread,
) -> None:
    tenant_id, keys = _tenant_keys(vault)
    with vault.client() as http:
        assert put_record(http, keys.ingest, "kim", "profile", b'{"v": 1}').status_code == 201
        hold = _hold(http, keys, "kim")
        replaced = put_record(http, keys.ingest, "kim", "profile", b'{"v": 2}', category=None)
        assert replaced.status_code == 200, replaced.text
        kept = _versions(vault, tenant_id, "profile")
        while_held = _retention(vault, days_later=0)
        still_kept = _versions(vault, tenant_id, "profile")
        live_while_held = _live(vault, [v["data_key_id"] for v in still_kept])
        officer = auth(keys.compliance)
        released = http.post(
            f"/v1/holds/{hold['id']}/release", json={"reason": "paid"}, headers=officer
        )
        assert released.status_code == 200, released.text
        after_release = _retention(vault, days_later=0)
        current = http.get(record_url("kim", "profile"), headers=auth(keys.read))
    versions = _versions(vault, tenant_id, "profile")
    # While held: the old version is kept, sealed under its live key, for compliance.
    assert [(v["version"], v["current"], v["sealed"]) for v in kept] == [
        (1, False, True),
        (2, True, True),
    ]
    assert while_held == 0 and still_kept == kept and live_while_held == [True, True]
    # Released: one job round shreds the old version (its key and its sealed value).
    assert after_release == 1
    assert _live(vault, [v["data_key_id"] for v in versions]) == [False, True]
    assert [(v["version"], v["current"], v["sealed"]) for v in versions] == [
        (1, False, False),
        (2, True, True),
    ]
    assert current.status_code == 200 and json.loads(current.content) == {"v": 2}


def test_an_item_that_fails_to_shred_does_not_stop_the_rest(vault: ServerThread) -> None:
    _, keys = _tenant_keys(vault)
    with vault.client() as http:
        ids = [
            uploaded(http, keys.ingest, "fails", body, category="recording")["id"]
            for body in (b"first call", b"second call")
        ]
    first, second = _artefact_keys(vault, ids)
    _retention(vault, days_later=91, failing=first)
    assert _live(vault, [first, second]) == [True, False]
    _retention(vault, days_later=91)  # mended: the next pass takes it
    assert _live(vault, [first, second]) == [False, False]
