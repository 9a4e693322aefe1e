"""One erasure that fails to shred (a bug, a damaged row) does not stall the others: its
transaction rolls back, it stays scheduled for the next pass, and every other due
erasure in the pass is shredded. The executor runs here by hand, so the vault is its own
with no background jobs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.helpers import auth, create_key, put_record
from tests.jobs import OneAskAtATime
from tests.support import ServerThread, make_tenant, private_server
from vault.runtime import operator_context
from vault.services.keyring import KeyRing
from workers.erasure import run_due_erasures


@pytest.fixture(scope="module")
def vault(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with private_server(pg_admin_url, tmp_path_factory.mktemp("isolation") / "data") as server:
        yield server


class _FailingFor(OneAskAtATime):
    """The real key ring, except that destroying one subject's keys raises."""

    def __init__(self, real: KeyRing, subject_id: uuid.UUID) -> None:
        super().__init__(real)
        self._subject_id = subject_id

    async def destroy_subject_keys(self, conn: Any, tenant_id: uuid.UUID, subject_id: uuid.UUID,
                                   *args: Any, **kwargs: Any) -> Any:  # fmt: skip
        if subject_id == self._subject_id:
            raise RuntimeError("damaged row")
        return await self._real.destroy_subject_keys(conn, tenant_id, subject_id, *args, **kwargs)


def _statuses(vault: ServerThread, key: dict[str, Any], ids: list[str]) -> list[str]:
    with vault.client() as http:
        return [http.get(f"/v1/erasures/{i}", headers=auth(key)).json()["status"] for i in ids]


def test_a_failing_erasure_does_not_stall_the_others(vault: ServerThread) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    refs = ["first-in-line", "second", "third"]
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        for ref in refs:
            assert put_record(http, app, ref, "r", b'{"x": 1}').status_code == 201
        ids = [
            http.post(f"/v1/subjects/{ref}/erasure", headers=auth(privacy)).json()["id"]
            for ref in refs
        ]

    async def run(fail_first: bool) -> int:
        async with operator_context(vault.settings, vault.database_url) as ctx:
            keyring: Any = ctx.keyring
            if fail_first:
                async with ctx.db.tenant_tx(tenant.id) as conn:
                    subject_id = await conn.fetchval(
                        "SELECT subject_id FROM erasures WHERE id = $1", uuid.UUID(ids[0])
                    )
                keyring = _FailingFor(ctx.keyring, subject_id)
            return await run_due_erasures(ctx.db, keyring)

    # The first in line fails every time: the two behind it are shredded anyway.
    assert asyncio.run(run(fail_first=True)) == 2
    assert _statuses(vault, privacy, ids) == ["scheduled", "in_progress", "in_progress"]
    # Mended, the next pass takes it.
    assert asyncio.run(run(fail_first=False)) == 1
    assert _statuses(vault, privacy, ids)[0] == "in_progress"
