"""The blob sweeper: removes what deletions and failed uploads left in the blob store.

- blobs of deleted (crypto-shredded) artefacts whose immediate removal failed;
- uploads still 'uploading' long after any upload could run (the process died): their
  data key is destroyed, the row marked deleted, the blob removed;
- incomplete streamed writes in the store itself (temp files, S3 multipart uploads);
- expired console sessions and playback links (hygiene: neither can be used any more).
All of it is ciphertext under destroyed keys already; removal is hygiene.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from vault.blobs.base import BlobStore
from vault.db.database import Database
from vault.db.sql import Queries
from vault.services.artefacts import ABANDONED_UPLOAD_AFTER, remove_blob
from vault.services.console_sessions import delete_expired_sessions
from vault.services.keyring import KeyRing
from vault.services.playback_links import delete_expired_links
from vault.services.tenants import list_tenants
from vault.services.transfers import delete_expired_holds

Q = Queries("artefacts")

# DESIGN/API: a deleted artefact's blob is gone within 5 minutes; sweeping every minute
# keeps that with retries to spare.
SWEEP_INTERVAL_SECONDS = 60.0
_BATCH = 500


@dataclass
class SweepReport:
    blobs_removed: int = 0
    uploads_abandoned: int = 0
    incomplete_aborted: int = 0
    console_sessions_deleted: int = 0
    playback_links_deleted: int = 0
    transfer_holds_deleted: int = 0


async def sweep(
    db: Database, blobs: BlobStore, keyring: KeyRing, now: datetime | None = None
) -> SweepReport:
    now = now or datetime.now(UTC)
    report = SweepReport()
    for tenant in await list_tenants(db):
        await _sweep_tenant(db, blobs, keyring, tenant.id, now, report)
        report.console_sessions_deleted += await delete_expired_sessions(db, tenant.id, now)
        report.playback_links_deleted += await delete_expired_links(db, tenant.id, now)
        report.transfer_holds_deleted += await delete_expired_holds(db, tenant.id)
    for upload in await blobs.list_incomplete(now - ABANDONED_UPLOAD_AFTER):
        await blobs.abort_incomplete(upload)
        report.incomplete_aborted += 1
    return report


async def _sweep_tenant(
    db: Database, blobs: BlobStore, keyring: KeyRing, tenant_id: uuid.UUID, now: datetime,
    report: SweepReport,
) -> None:  # fmt: skip
    async with db.tenant_tx(tenant_id) as conn:
        rows = await conn.fetch(Q.cleanup_due, tenant_id, now - ABANDONED_UPLOAD_AFTER, _BATCH)
    for row in rows:
        if row["state"] == "uploading":
            async with db.tenant_tx(tenant_id) as conn:
                await conn.execute(Q.abandon, tenant_id, row["id"])
                await keyring.destroy_data_key(conn, tenant_id, row["data_key_id"], cleanup=True)
            report.uploads_abandoned += 1
        if await remove_blob(db, blobs, tenant_id, row["id"], row["blob_key"]):
            report.blobs_removed += 1
