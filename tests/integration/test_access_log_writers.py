"""Two access-log writers on one tenant's chain, as two API replicas are: the database
chains each batch onto whatever head it finds (migration 0015), so writers taking turns
never conflict: one statement per batch, no transaction around it, and one whole chain."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from tests.support import make_tenant, new_database
from vault.config import Settings
from vault.db.database import Connection, Database
from vault.runtime import operator_context, prepare_database
from vault.services.access_audit import verify_chain
from vault.services.access_log import AccessEntry, AccessLogWriter

ROUNDS = 6


class CountingDatabase(Database):
    """The pool of a real Database; counts the transactions opened through it."""

    def __init__(self, db: Database) -> None:
        super().__init__(db._pool)
        self.transactions = 0

    @asynccontextmanager
    async def tenant_tx(
        self, tenant_id: uuid.UUID, *, set_by_first_statement: bool = False
    ) -> AsyncIterator[Connection]:
        self.transactions += 1
        async with super().tenant_tx(
            tenant_id, set_by_first_statement=set_by_first_statement
        ) as conn:
            yield conn


def _entry(tenant_id: uuid.UUID, writer: str, n: int) -> AccessEntry:
    if writer == "first":
        # Every optional field empty (None and "" must hash differently).
        return AccessEntry(
            tenant_id, datetime.now(UTC), f"{writer}-{n}", "GET", "/v1/api-keys", 200,
            key_prefix="" if n % 2 else None,
        )  # fmt: skip
    # Every field set, text beyond ASCII: the database's encoding of each must be the one
    # `audit verify` recomputes in Python.
    return AccessEntry(
        tenant_id, datetime(2026, 11, 26, 3, 4, 5, 123456 + n, tzinfo=UTC), f"{writer}-{n}",
        "PUT", "/v1/subjects/{ref}/records/{name}ä", 201, ip="2001:db8::1",
        api_key_id=uuid.uuid4(), key_prefix="dv_live_AbC", bytes_in=2**40 + n,
        bytes_out=n, subject_ref_hash=bytes(range(32)), artefact_id=uuid.uuid4(),
        key_authenticated=False,
    )  # fmt: skip


def test_writers_taking_turns_append_one_statement_each_to_one_chain(
    pg_admin_url: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=new_database(pg_admin_url))
    url = prepare_database(settings)
    tenant = make_tenant(settings, url)

    async def run() -> None:
        async with operator_context(settings, url) as ctx:
            db = CountingDatabase(ctx.db)
            first = AccessLogWriter(db, ctx.secrets.access_log_ip_key)
            second = AccessLogWriter(db, ctx.secrets.access_log_ip_key)
            first.start()
            second.start()
            try:
                for n in range(ROUNDS):
                    # Each writer's row waits for its commit, so every batch finds the
                    # head the other writer just moved (the first row creates it).
                    await first.record(_entry(tenant.id, "first", n))
                    await second.record(_entry(tenant.id, "second", n))
            finally:
                await first.stop()
                await second.stop()
            assert db.transactions == 0
            report = await verify_chain(ctx.db, tenant.id)
            assert report.ok, report.problem
            assert report.rows == 2 * ROUNDS

    asyncio.run(run())
