"""Issuing and reading erasure receipts: signed statements of what an erasure destroyed,
what it kept and why, and when backups stop holding anything readable."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crypto.providers.base import RootKeyProvider
from vault.config import Settings
from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.domain.deadlines import backups_unreadable_after
from vault.errors import Conflict, NotFound
from vault.services.receipts import ReceiptSigner, build_receipt

E = Queries("erasures")
L = Queries("ledger")


@dataclass(frozen=True)
class ReceiptIssuer:
    signer: ReceiptSigner
    issuer: str
    epoch_days: int
    backup_retention_days: int
    root_key_in_kms: bool = False

    @classmethod
    async def for_deployment(
        cls, db: Database, root: RootKeyProvider, settings: Settings
    ) -> ReceiptIssuer:
        return cls(
            await ReceiptSigner.load_or_create(db, root),
            settings.public_base_url,
            settings.epoch_days,
            settings.backup_retention_days,
            root.name == "aws-kms",
        )

    async def horizon(self, conn: Connection, now: datetime) -> datetime | None:
        """The receipt's `backups_unreadable_after` (vault/domain/deadlines.py)."""
        started: datetime = await conn.fetchval(E.current_epoch_start)
        return backups_unreadable_after(
            now, started, self.epoch_days, self.backup_retention_days, self.root_key_in_kms
        )

    async def issue(
        self, conn: Connection, tenant_id: uuid.UUID, erasure_id: uuid.UUID,
        now: datetime | None = None,
    ) -> None:  # fmt: skip
        """Sign and store the erasure's receipt (final once completed, interim while
        held), with the shred ledger's head as it stands: every destroyed key of the
        erasure is in the ledger by then, so the head proves how far it reached."""
        await self.issue_many(conn, tenant_id, [erasure_id], now)

    async def issue_many(
        self, conn: Connection, tenant_id: uuid.UUID, erasure_ids: list[uuid.UUID],
        now: datetime | None = None,
    ) -> None:  # fmt: skip
        """`issue` for several erasures in one transaction: the horizon and the ledger
        head they state are read once for all (the head read is at or after every one
        of their entries, which were all published before this was called)."""
        if not erasure_ids:
            return
        horizon = await self.horizon(conn, now or datetime.now(UTC))
        ledger = await _ledger_head(conn)
        # The erasures and their items in one statement each, the receipts stored in one
        # round trip (the publisher completes a batch at once: issue 19, fourth round).
        erasures = {row["id"]: row for row in await conn.fetch(E.get_many, tenant_id, erasure_ids)}
        items: dict[uuid.UUID, list[Any]] = {}
        for item in await conn.fetch(E.items_of_many, tenant_id, erasure_ids):
            items.setdefault(item["erasure_id"], []).append(item)
        stored = []
        for erasure_id in erasure_ids:
            erasure = erasures.get(erasure_id)
            assert erasure is not None
            final, document = self._receipt(
                tenant_id, erasure, items.get(erasure_id, []), horizon, ledger
            )
            stored.append((tenant_id, erasure_id, final, json.dumps(document)))
        await conn.executemany(E.store_receipt, stored)

    def _receipt(
        self, tenant_id: uuid.UUID, erasure: Any, items: list[Any], horizon: datetime | None,
        ledger: dict[str, Any],
    ) -> tuple[bool, dict[str, Any]]:  # fmt: skip
        """Whether the receipt is final (completed, else interim while held), and it signed."""
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
            erasure_id=erasure["id"],
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
            backups_unreadable_after=horizon,
            ledger=ledger,
        )
        return final, self.signer.sign(receipt)


async def _ledger_head(conn: Connection) -> dict[str, Any]:
    head = await conn.fetchrow(L.get_head)
    if head is None:
        return {"seq": 0, "head": bytes(32).hex()}
    return {"seq": int(head["seq"]), "head": bytes(head["entry_hash"]).hex()}


async def read_receipt(db: Database, tenant_id: uuid.UUID, erasure_id: uuid.UUID) -> dict[str, Any]:
    """The final receipt of a completed erasure, the interim one of a held erasure."""
    result: dict[str, Any] = json.loads(await read_receipt_document(db, tenant_id, erasure_id))
    return result


async def read_receipt_document(db: Database, tenant_id: uuid.UUID, erasure_id: uuid.UUID) -> bytes:
    """`read_receipt` as the JSON the vault stored when it signed it."""
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
    text = str(document)
    stored = json.loads(text)
    if "jws" not in stored:
        # Receipts issued before the JWS existed are not signed again (their backup
        # horizon may have passed since): `jws` is null for them. Only the wrapper gains
        # the field; the signed receipt is as stored.
        stored["jws"] = None
        text = json.dumps(stored, ensure_ascii=False)
    return text.encode()
