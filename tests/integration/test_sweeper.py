"""The blob sweeper: what a crash or a failed removal leaves behind is cleaned up."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crypto.stream import encrypt_stream
from tests.keys_support import insert_artefact_row
from tests.seaweed import SeaweedS3
from tests.support import Tenant
from vault.config import Settings
from vault.runtime import operator_context
from vault.services.artefacts import ABANDONED_UPLOAD_AFTER
from vault.services.keyring import artefact_object
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
            context = data_key.content_context(artefact_object(artefact_id))
            await ctx.blobs.put_stream(
                key, encrypt_stream(data_key.key, context, _chunks(b"x" * 5000))
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
            assert row is not None
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


def test_stale_s3_multipart_upload_is_aborted_and_a_young_one_left_running(
    private_vault: Settings, seaweed_s3: SeaweedS3
) -> None:
    """A multipart upload a dead process left in S3 (its parts are stored and billed, but
    no object exists) is aborted once it is older than any upload could run; one that may
    still be running is left alone, and finished objects are never touched."""
    store = seaweed_s3.store()  # the shared bucket under a fresh prefix of its own
    client = seaweed_s3.client()
    name = f"{store.prefix}tenants/{uuid.uuid4()}/subjects/s/artefacts/a/k"
    started = client.create_multipart_upload(Bucket=store.bucket, Key=name)
    client.upload_part(
        Bucket=store.bucket, Key=name, UploadId=started["UploadId"], PartNumber=1,
        Body=b"c" * (5 * 1024 * 1024),
    )  # fmt: skip
    finished = f"{store.prefix}tenants/{uuid.uuid4()}/subjects/s/artefacts/b/k"
    client.put_object(Bucket=store.bucket, Key=finished, Body=b"a finished object")

    def uploads() -> list[str]:
        listing = client.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
        return [u["UploadId"] for u in listing.get("Uploads", [])]

    async def run() -> tuple[int, list[str], int]:
        async with operator_context(private_vault, private_vault.database_url or "") as ctx:
            now = datetime.now(UTC)
            young = await sweep(ctx.db, store, ctx.keyring, now=now)
            still = uploads()
            later = now + ABANDONED_UPLOAD_AFTER + timedelta(hours=1)
            old = await sweep(ctx.db, store, ctx.keyring, now=later)
            return young.incomplete_aborted, still, old.incomplete_aborted

    try:
        young_aborted, still_running, old_aborted = asyncio.run(run())
        assert young_aborted == 0
        assert still_running == [started["UploadId"]]
        assert old_aborted == 1
        assert uploads() == []
        body = client.get_object(Bucket=store.bucket, Key=finished)["Body"]
        with body:
            assert body.read() == b"a finished object"
    finally:
        client.delete_object(Bucket=store.bucket, Key=finished)
        client.close()
        asyncio.run(store.close())
