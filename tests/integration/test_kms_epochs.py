"""Root-key epochs with the aws-kms provider, end to end on moto's KMS (server mode on
127.0.0.1): `new-epoch` creates a KMS key and records it; `retire-epoch` waits for the
backup retention, then schedules the old key's deletion, and the old epoch's envelopes
no longer open."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from crypto.errors import KeyUnavailableError
from tests.crypto.test_crypto_aws_kms import (
    DUMMY_KEY_ID,
    DUMMY_SECRET,
    kms_client,
    start_server,
    stop_server,
)
from tests.keys_support import new_data_key
from tests.support import make_tenant, new_database
from vault.config import Settings
from vault.errors import Conflict
from vault.runtime import operator_context
from vault.services.holds import PgHoldCheck
from vault.services.keyring import DataKey, KeyRing
from vault.services.root_epochs import list_epochs, retire_epoch, start_new_epoch
from vault.services.tenants import kek_context


@pytest.fixture
def kms(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    server, endpoint = start_server()
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET)
    try:
        yield kms_client(endpoint)
    finally:
        stop_server(server)


def _key_state(client: Any, key_id: str) -> str:
    return str(client.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"])


def test_kms_epoch_gets_its_own_key_and_retiring_schedules_the_old_one_for_deletion(
    kms: Any, pg_admin_url: str, tmp_path: Path
) -> None:
    first_key = kms.create_key(Description="datavault root, epoch 1")["KeyMetadata"]["KeyId"]
    url = new_database(pg_admin_url)
    settings = Settings(
        data_dir=tmp_path / "data", database_url=url, root_key=f"aws-kms:{first_key}"
    )
    tenant = make_tenant(settings, url)

    async def run() -> None:
        keys: list[DataKey] = []
        async with operator_context(settings, url) as ctx:
            for _ in range(3):
                keys.append((await new_data_key(ctx, tenant.id))[1])
            conn = await asyncpg.connect(url)
            old_kek = bytes(
                await conn.fetchval(
                    "SELECT wrapped_key FROM tenant_keks WHERE tenant_id = $1", tenant.id
                )
            )
            await conn.close()
            report = await start_new_epoch(ctx.db, ctx.keyring, ctx.root, propagation_seconds=0)
            assert report.epoch == 2 and [t.new_version for t in report.tenants] == [2]

        epochs = {e["epoch"]: e["kms_key_id"] for e in await _epochs(url)}
        second_key = epochs[2]
        assert epochs[1] == first_key
        assert second_key and second_key != first_key
        assert _key_state(kms, second_key) == "Enabled"

        # Another process, configured with epoch 1's key only, learns epoch 2 from the
        # database and reads everything.
        async with operator_context(settings, url) as ctx:
            assert ctx.root.current_epoch() == 2
            async with ctx.db.tenant_tx(tenant.id) as tx:
                for key in keys:
                    assert (
                        await KeyRing(ctx.root, PgHoldCheck()).data_key(tx, tenant.id, key.id)
                    ).key == key.key
            ended = next(e for e in await list_epochs(ctx.db) if e.epoch == 1).ended_at
            assert ended is not None
            with pytest.raises(Conflict, match="backups may need it"):
                await retire_epoch(
                    ctx.db, ctx.root, 1, 35, now=ended + timedelta(days=35, microseconds=-1)
                )
            assert _key_state(kms, first_key) == "Enabled"
            await retire_epoch(ctx.db, ctx.root, 1, 35, now=ended + timedelta(days=35))
            await retire_epoch(ctx.db, ctx.root, 1, 35, now=ended + timedelta(days=36))  # again
        described = kms.describe_key(KeyId=first_key)["KeyMetadata"]
        assert described["KeyState"] == "PendingDeletion"
        assert described["DeletionDate"]

        # A copy of the old wrapped KEK (a backup) no longer opens in the vault, and what
        # is live still does, also in a fresh process.
        async with operator_context(settings, url) as ctx:
            assert ctx.root.epochs() == [2]
            with pytest.raises(KeyUnavailableError, match="epoch 1"):
                ctx.root.unwrap(old_kek, kek_context(tenant.id, 1))
            async with ctx.db.tenant_tx(tenant.id) as tx:
                for key in keys:
                    assert (
                        await KeyRing(ctx.root, PgHoldCheck()).data_key(tx, tenant.id, key.id)
                    ).key == key.key

    asyncio.run(run())


async def _epochs(url: str) -> list[Any]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch("SELECT epoch, kms_key_id FROM root_epochs ORDER BY epoch"))
    finally:
        await conn.close()


def test_retiring_the_current_kms_epoch_is_refused_and_keeps_its_key(
    kms: Any, pg_admin_url: str, tmp_path: Path
) -> None:
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    url = new_database(pg_admin_url)
    settings = Settings(data_dir=tmp_path / "data", database_url=url, root_key=f"aws-kms:{key}")
    make_tenant(settings, url, slug=f"k-{uuid.uuid4().hex[:8]}")

    async def run() -> None:
        async with operator_context(settings, url) as ctx:
            with pytest.raises(Conflict, match="current"):
                await retire_epoch(ctx.db, ctx.root, 1, 0)

    asyncio.run(run())
    assert _key_state(kms, key) == "Enabled"
