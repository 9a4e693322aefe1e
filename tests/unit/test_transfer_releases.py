"""TransferReleaser (vault/services/transfer_releases.py): ended transfers' holds go in
few statements (a seeking player's reads share one), never later than the gathering
window, and at once when the vault stops. A stand-in database records the statements."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import cast

from vault.db.database import Database
from vault.services.transfer_releases import RELEASE_GATHER_SECONDS, TransferReleaser

TENANT_A, TENANT_B = uuid.uuid4(), uuid.uuid4()


class _Db:
    """Records each release statement: (tenant, transfers, seconds since the start)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.statements: list[tuple[uuid.UUID, list[uuid.UUID], float]] = []

    async def tenant_fetch(self, tenant_id: uuid.UUID, query: str, *args: object) -> list[object]:
        transfers = cast(list[uuid.UUID], args[0])
        self.statements.append((tenant_id, list(transfers), time.monotonic() - self.started))
        return []


def _releaser(db: _Db) -> TransferReleaser:
    releaser = TransferReleaser(cast(Database, db))
    releaser.start()
    return releaser


def test_releases_queued_within_the_window_share_one_statement_per_tenant() -> None:
    async def run() -> _Db:
        db = _Db()
        releaser = _releaser(db)
        first = [uuid.uuid4() for _ in range(5)]
        for transfer in first:  # seeks ending one after another, the loop turning between
            assert releaser.release_later(TENANT_A, transfer)
            await asyncio.sleep(0)
        assert releaser.release_later(TENANT_B, other := uuid.uuid4())
        await asyncio.sleep(RELEASE_GATHER_SECONDS * 5)
        await releaser.stop()
        assert db.statements and {t for t, _, _ in db.statements} == {TENANT_A, TENANT_B}
        released = [t for tenant, ts, _ in db.statements if tenant == TENANT_A for t in ts]
        assert released == first
        assert [ts for tenant, ts, _ in db.statements if tenant == TENANT_B] == [[other]]
        return db

    db = asyncio.run(run())
    assert len(db.statements) == 2  # one per tenant, not one per transfer


def test_a_release_waits_no_longer_than_the_window() -> None:
    async def run() -> float:
        db = _Db()
        releaser = _releaser(db)
        await asyncio.sleep(0.01)
        queued = time.monotonic() - db.started
        releaser.release_later(TENANT_A, uuid.uuid4())
        for _ in range(200):
            if db.statements:
                break
            await asyncio.sleep(0.005)
        await releaser.stop()
        return db.statements[0][2] - queued

    waited = asyncio.run(run())
    # The window, plus scheduling slack on a shared machine; never the sweeper's clock.
    assert RELEASE_GATHER_SECONDS * 0.9 <= waited < RELEASE_GATHER_SECONDS + 0.5


def test_stop_releases_what_is_queued_without_waiting_for_the_window() -> None:
    async def run() -> tuple[_Db, float]:
        db = _Db()
        releaser = _releaser(db)
        transfer = uuid.uuid4()
        releaser.release_later(TENANT_A, transfer)
        stopping = time.monotonic()
        await releaser.stop()
        took = time.monotonic() - stopping
        assert [ts for _, ts, _ in db.statements] == [[transfer]]
        assert not releaser.release_later(TENANT_A, uuid.uuid4())  # stopped: caller releases
        return db, took

    _, took = asyncio.run(run())
    assert took < RELEASE_GATHER_SECONDS


def test_a_release_queued_during_stop_is_refused_not_lost_silently() -> None:
    async def run() -> bool:
        releaser = _releaser(_Db())
        stopping = asyncio.create_task(releaser.stop())
        await asyncio.sleep(0)
        accepted = releaser.release_later(TENANT_A, uuid.uuid4())
        await stopping
        return accepted

    assert asyncio.run(run()) is False
