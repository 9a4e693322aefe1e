"""The blob sweeper: what a crash or a failed removal leaves behind is cleaned up."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crypto.stream import encrypt_stream
from tests.keys_support import insert_artefact_row
from tests.support import Tenant
from vault.config import Settings
from vault.runtime import operator_context
from workers.sweeper import sweep


async def _chunks(data: bytes):  # type: ignore[no-untyped-def]
    yield data


def test_upload_abandoned_by_a_crash_is_shredded_and_its_blob_removed(
    settings: Settings, database_url: str, tenant: Tenant
) -> None:
    async def run() -> None:
        async with operator_context(settings, database_url) as ctx:
            artefact_id, data_key, key = await insert_artefact_row(
                ctx, tenant.id, "uploading", age=timedelta(hours=25)
            )
            # The process died after the blob was written, before the row became active.
            await ctx.blobs.put_stream(
                key, encrypt_stream(data_key.key, data_key.content_context(), _chunks(b"x" * 5000))
            )
            # A younger upload may still be running: the sweeper must leave it alone.
            report = await sweep(ctx.db, ctx.blobs, ctx.keyring, now=datetime.now(UTC))
            assert report.uploads_abandoned >= 1
            async with ctx.db.tenant_tx(tenant.id) as conn:
                row = await conn.fetchrow(
                    "SELECT state, blob_removed_at FROM artefacts WHERE id = $1", artefact_id
                )
                wrapped = await conn.fetchval(
                    "SELECT wrapped_key FROM data_keys WHERE id = $1", data_key.id
                )
            assert row["state"] == "deleted" and row["blob_removed_at"] is not None
            assert wrapped is None
            assert key not in await ctx.blobs.list_keys(f"tenants/{tenant.id}/")

    asyncio.run(run())


def test_a_running_upload_is_not_swept(
    settings: Settings, database_url: str, tenant: Tenant
) -> None:
    async def run() -> None:
        async with operator_context(settings, database_url) as ctx:
            artefact_id, _, _ = await insert_artefact_row(ctx, tenant.id, "uploading")
            await sweep(ctx.db, ctx.blobs, ctx.keyring)
            async with ctx.db.tenant_tx(tenant.id) as conn:
                state = await conn.fetchval(
                    "SELECT state FROM artefacts WHERE id = $1", artefact_id
                )
            assert state == "uploading"

    asyncio.run(run())


def test_blob_whose_removal_failed_is_removed_by_the_sweeper(
    settings: Settings, database_url: str, tenant: Tenant
) -> None:
    async def run() -> None:
        async with operator_context(settings, database_url) as ctx:
            _, _, key = await insert_artefact_row(ctx, tenant.id, "deleted")
            await ctx.blobs.put(key, b"ciphertext left behind")
            await sweep(ctx.db, ctx.blobs, ctx.keyring)
            assert key not in await ctx.blobs.list_keys(f"tenants/{tenant.id}/")

    asyncio.run(run())


def test_stale_partial_write_in_the_store_is_aborted(settings: Settings, database_url: str) -> None:
    partial = (
        Path(settings.data_dir).resolve() / "blobs" / "tenants" / f"x.{uuid.uuid4().hex}.partial"
    )
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(b"half an upload")
    old = (datetime.now(UTC) - timedelta(hours=30)).timestamp()
    os.utime(partial, (old, old))

    async def run() -> None:
        async with operator_context(settings, database_url) as ctx:
            report = await sweep(ctx.db, ctx.blobs, ctx.keyring)
            assert report.incomplete_aborted >= 1

    asyncio.run(run())
    assert not partial.exists()
