"""Shred-ledger entries and access-log anchors under S3 Object Lock (DESIGN.md "Shred
ledger": "under Object Lock where the store has it"; "Access log": "Every anchor is kept
(a history, under Object Lock where the store has it)"), on a real SeaweedFS bucket
created with Object Lock."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from tests.api.helpers import create_key
from tests.jobs import run_worker_pass
from tests.seaweed import SeaweedS3
from tests.support import bearer, make_tenant, new_database, running_server
from vault.config import Settings
from vault.runtime import operator_context
from vault.services.access_anchor import history_key, history_prefix
from vault.services.access_audit import verify_chains
from workers.access_anchor import AnchorMemory, publish_anchors


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
        run_worker_pass(server)
        shown = http.get(f"/v1/erasures/{erasure['id']}", headers=privacy).json()
        assert shown["status"] == "completed", shown
    client = seaweed_s3.client()
    versions = client.list_object_versions(Bucket=vault.s3_bucket or "", Prefix="ledger/")
    # The signed marker start-up wrote (vault/services/ledger_objects.py), then the
    # erasure request's instruction entry and the shred's (one object each, or one).
    _marker, *entries = sorted(versions["Versions"], key=lambda v: v["Key"])
    assert 1 <= len(entries) <= 2, entries
    for entry in entries:
        retention = client.get_object_retention(Bucket=vault.s3_bucket or "", Key=entry["Key"])
        until = retention["Retention"]["RetainUntilDate"]
        assert retention["Retention"]["Mode"] == "COMPLIANCE"
        assert timedelta(days=10) < until - datetime.now(UTC) <= timedelta(days=11)
        with pytest.raises(ClientError, match="AccessDenied"):
            client.delete_object(
                Bucket=vault.s3_bucket or "", Key=entry["Key"], VersionId=entry["VersionId"]
            )


def test_access_log_anchors_are_written_locked_one_new_object_per_round(
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
    bucket = vault.s3_bucket or ""
    tenant = make_tenant(vault, url)
    start = datetime.now(UTC) - timedelta(minutes=2)
    rounds = [start + timedelta(seconds=30 * n) for n in range(3)]

    async def run() -> bool:
        async with operator_context(vault, url) as ctx:
            memory = AnchorMemory()
            for at in rounds:  # no request in between: the last two are heartbeats
                await publish_anchors(
                    ctx.db, ctx.blobs, ctx.secrets.anchor_keys,
                    now=at, memory=memory, retain_days=10, wait=True,
                )  # fmt: skip
            [report] = await verify_chains(
                ctx.db, ctx.blobs, ctx.secrets.anchor_keys, tenant.id, now=rounds[-1]
            )
            return report.ok and report.anchors == 3

    assert asyncio.run(run())
    client = seaweed_s3.client()
    versions = client.list_object_versions(Bucket=bucket, Prefix=history_prefix(tenant.id))
    # One object per round, each written once (no second version of any key).
    listed = sorted((v["Key"], v["VersionId"]) for v in versions["Versions"])
    assert [key for key, _ in listed] == [history_key(tenant.id, n) for n in (1, 2, 3)]
    assert not versions.get("DeleteMarkers")
    for (key, version), at in zip(listed, rounds, strict=True):
        retention = client.get_object_retention(Bucket=bucket, Key=key, VersionId=version)
        assert retention["Retention"]["Mode"] == "COMPLIANCE"
        # Locked for the backup retention and a day from when it was written.
        until = retention["Retention"]["RetainUntilDate"]
        assert abs(until - (at + timedelta(days=11))) < timedelta(seconds=2)
    key, version = listed[0]
    with pytest.raises(ClientError, match="AccessDenied"):
        client.delete_object(Bucket=bucket, Key=key, VersionId=version)
    # Putting an old anchor back over the newest leaves the newest there, locked.
    newest_key, newest_version = listed[-1]
    old = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=newest_key, Body=old)
    kept = client.get_object(Bucket=bucket, Key=newest_key, VersionId=newest_version)
    assert kept["Body"].read() != old
