"""Shred-ledger entries under S3 Object Lock (DESIGN.md "Shred ledger": "under Object Lock
where the store has it"), on a real SeaweedFS bucket created with Object Lock."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from tests.api.helpers import create_key
from tests.seaweed import SeaweedS3
from tests.support import bearer, make_tenant, new_database, running_server
from vault.config import Settings


def _locked_bucket(seaweed: SeaweedS3) -> str:
    bucket = f"locked-{uuid.uuid4().hex[:10]}"
    seaweed.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    return bucket


def test_put_retained_locks_on_an_object_lock_bucket_and_not_elsewhere(
    seaweed_s3: SeaweedS3,
) -> None:
    until = datetime.now(UTC) + timedelta(days=2)
    locked = seaweed_s3.store(bucket=_locked_bucket(seaweed_s3), prefix="")
    plain = seaweed_s3.store()

    async def run() -> tuple[bool, bool, bytes]:
        try:
            on_locked = await locked.put_retained("ledger/1.json", b"entry", until)
            on_plain = await plain.put_retained("ledger/1.json", b"entry", until)
            return on_locked, on_plain, await plain.get("ledger/1.json")
        finally:
            await locked.close()
            await plain.close()

    on_locked, on_plain, stored = asyncio.run(run())
    assert (on_locked, on_plain, stored) == (True, False, b"entry")
    client = seaweed_s3.client()
    retention = client.get_object_retention(Bucket=locked.bucket, Key="ledger/1.json")
    assert retention["Retention"]["Mode"] == "COMPLIANCE"
    assert abs(retention["Retention"]["RetainUntilDate"] - until) < timedelta(seconds=2)
    [version] = client.list_object_versions(Bucket=locked.bucket, Prefix="ledger/")["Versions"]
    with pytest.raises(ClientError, match="AccessDenied"):
        client.delete_object(
            Bucket=locked.bucket, Key="ledger/1.json", VersionId=version["VersionId"]
        )


def test_an_erasures_ledger_entry_cannot_be_deleted_for_the_backup_retention(
    settings: Settings, pg_admin_url: str, seaweed_s3: SeaweedS3
) -> None:
    vault = dataclasses.replace(
        settings,
        database_url=new_database(pg_admin_url),
        s3_bucket=_locked_bucket(seaweed_s3),
        s3_endpoint_url=seaweed_s3.endpoint_url,
        s3_region="us-east-1",
        backup_retention_days=10,
    )
    url = vault.database_url or ""
    tenant = make_tenant(vault, url)
    with running_server(vault, url) as server, server.client() as http:
        app = bearer(create_key(http, tenant, ["ingest"])["secret"])
        privacy = bearer(create_key(http, tenant, ["erasure"])["secret"])
        http.put("/v1/subjects/ann/records/p?category=account", json=1, headers=app)
        erasure = http.post("/v1/subjects/ann/erasure", headers=privacy).json()
        deadline = time.monotonic() + 30
        while http.get(f"/v1/erasures/{erasure['id']}", headers=privacy).json()["status"] != (
            "completed"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    client = seaweed_s3.client()
    versions = client.list_object_versions(Bucket=vault.s3_bucket or "", Prefix="ledger/")
    [entry] = versions["Versions"]
    retention = client.get_object_retention(Bucket=vault.s3_bucket or "", Key=entry["Key"])
    until = retention["Retention"]["RetainUntilDate"]
    assert retention["Retention"]["Mode"] == "COMPLIANCE"
    assert timedelta(days=10) < until - datetime.now(UTC) <= timedelta(days=11)
    with pytest.raises(ClientError, match="AccessDenied"):
        client.delete_object(
            Bucket=vault.s3_bucket or "", Key=entry["Key"], VersionId=entry["VersionId"]
        )
