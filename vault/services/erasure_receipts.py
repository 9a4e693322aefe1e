"""Issuing and reading erasure receipts: signed statements of what an erasure destroyed,
what it kept and why, and when backups stop holding anything readable."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from crypto.providers.base import RootKeyProvider
from vault.config import Settings
from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.errors import Conflict, NotFound
from vault.services.receipts import ReceiptSigner, build_receipt

E = Queries("erasures")


@dataclass(frozen=True)
class ReceiptIssuer:
    signer: ReceiptSigner
    issuer: str
    epoch_days: int
    backup_retention_days: int

    @classmethod
    async def for_deployment(
        cls, db: Database, root: RootKeyProvider, settings: Settings
    ) -> ReceiptIssuer:
        return cls(
            await ReceiptSigner.load_or_create(db, root),
            settings.receipt_issuer,
            settings.epoch_days,
            settings.backup_retention_days,
        )

    async def backups_unreadable_after(self, conn: Connection) -> datetime:
        """DESIGN.md: the start of the next root-key epoch plus the backup retention. With
        DATAVAULT_EPOCH_DAYS=0 (epochs only by command) the next epoch is taken to start
        now, the earliest it can."""
        started: datetime = await conn.fetchval(E.current_epoch_start)
        next_epoch = started + timedelta(days=self.epoch_days) if self.epoch_days else started
        return max(next_epoch, started) + timedelta(days=self.backup_retention_days)

    async def issue(self, conn: Connection, tenant_id: uuid.UUID, erasure_id: uuid.UUID) -> None:
        erasure = await conn.fetchrow(E.get, tenant_id, erasure_id)
        assert erasure is not None
        items = await conn.fetch(E.items, tenant_id, erasure_id)
        final = erasure["status"] == "completed"
        held: dict[str, set[str]] = {}
        for item in items:
            if item["outcome"] == "held":
                held.setdefault(item["category"], set()).update(
                    str(h) for h in item["hold_ids"] or []
                )
        receipt = build_receipt(
            issuer=self.issuer,
            tenant_id=tenant_id,
            erasure_id=erasure_id,
            subject_ref_hash=bytes(erasure["subject_ref_hash"]),
            requested_at=erasure["requested_at"],
            completed_at=erasure["completed_at"],
            final=final,
            shredded=[
                {
                    "category": i["category"],
                    "key_id": i["key_id"],
                    "destroyed_at": i["destroyed_at"],
                }
                for i in items
                if i["outcome"] == "shredded"
            ],
            held=[{"category": c, "hold_ids": sorted(ids)} for c, ids in sorted(held.items())],
            retained=[
                {"category": i["category"], "until": i["kept_until"]}
                for i in items
                if i["outcome"] == "retained"
            ],
            backups_unreadable_after=await self.backups_unreadable_after(conn),
        )
        document = self.signer.sign(receipt)
        await conn.execute(E.store_receipt, tenant_id, erasure_id, final, json.dumps(document))


async def read_receipt(db: Database, tenant_id: uuid.UUID, erasure_id: uuid.UUID) -> dict[str, Any]:
    """The final receipt of a completed erasure, the interim one of a held erasure."""
    async with db.tenant_tx(tenant_id) as conn:
        erasure = await conn.fetchrow(E.get, tenant_id, erasure_id)
        if erasure is None:
            raise NotFound("no such erasure")
        if erasure["status"] not in ("completed", "held"):
            raise Conflict(f"no receipt yet: the erasure is {erasure['status']}")
        document = await conn.fetchval(
            E.receipt, tenant_id, erasure_id, erasure["status"] == "completed"
        )
    if document is None:
        raise Conflict("the receipt is being issued; try again shortly")
    result: dict[str, Any] = json.loads(document)
    return result
