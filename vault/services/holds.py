"""Legal holds: place, amend, release (two keys for litigation and law enforcement), and
the check every destroy path asks before it destroys a key."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.domain.categories import check_category_list, known_categories
from vault.domain.holds import (
    MAX_RELEASE_REASON_LENGTH,
    TWO_KEY_RELEASE,
    HoldAction,
    HoldReason,
    KeyHolder,
    check_new_expiry,
    release_request_pending,
    second_person_refusal,
)
from vault.errors import Conflict, InvalidInput, NotFound
from vault.observability import events
from vault.services.ledger_inline import InlineLedger
from vault.services.ledger_instructions import record_hold
from vault.services.tenants import load_settings
from vault.services.wakeups import ERASURES_DUE, notify
from vault.services.webhook_outbox import emit_hold_released

log = structlog.get_logger("datavault.holds")

Q = Queries("holds")
K = Queries("api_keys")


@dataclass(frozen=True)
class Actor:
    """Who acts on a hold, for the journal: the API key and the client IP."""

    api_key_id: uuid.UUID
    ip: str | None


@dataclass(frozen=True)
class HoldRequest:
    subject_ref_hash: bytes | None
    categories: tuple[str, ...] | None
    reason: str
    reference: str
    note: str | None
    expires_at: datetime | None


class PgHoldCheck:
    """The HoldCheck the key ring asks (vault/services/holds_seam.py)."""

    async def holds_covering(
        self,
        conn: Connection,
        tenant_id: uuid.UUID,
        subject_id: uuid.UUID,
        categories: Sequence[str],
    ) -> dict[str, list[uuid.UUID]]:
        # Destroy paths hold the subject's row lock; the query takes the tenant's holds
        # lock shared, which orders them against a tenant-wide hold being placed.
        rows = await conn.fetch(Q.covering, tenant_id, subject_id, list(categories))
        covered: dict[str, list[uuid.UUID]] = {}
        for row in rows:
            for category in categories:
                if row["categories"] is None or category in row["categories"]:
                    covered.setdefault(category, []).append(row["id"])
        return covered


def check_categories(
    categories: Sequence[str] | None, known_categories: Sequence[str]
) -> tuple[str, ...] | None:
    """The categories a hold covers (None: all), each one the tenant knows, in order, once."""
    if categories is None:
        return None
    checked = check_category_list(list(categories), known_categories)
    if checked is None:
        raise InvalidInput(
            "categories must be a non-empty list of known categories (or left out for all)",
            field="categories",
        )
    return checked


def check_expiry(value: datetime | None) -> datetime | None:
    if value is not None and value <= datetime.now(UTC):
        raise InvalidInput("expires_at must be in the future", field="expires_at")
    return value


class HoldService:
    """`ledger`: publishes a change's shred-ledger entry before the answer, so a backup
    restored after the answer keeps it (vault/services/ledger_instructions.py); if the
    blob store fails, the publisher's next round does, and the hold holds in PostgreSQL
    meanwhile. The same InlineLedger serves the other controls (VaultState.ledger)."""

    def __init__(self, db: Database, ledger: InlineLedger | None = None) -> None:
        self._db = db
        self.ledger = ledger if ledger is not None else InlineLedger(None)

    async def _make_durable(self, tenant_id: uuid.UUID, hold_id: uuid.UUID) -> None:
        await self.ledger.make_durable(
            "hold_ledger_entry_deferred", tenant_id=str(tenant_id), hold_id=str(hold_id)
        )

    async def known_categories(self, tenant_id: uuid.UUID) -> list[str]:
        async with self._db.tenant_tx(tenant_id) as conn:
            return await self._known_categories(conn, tenant_id)

    @staticmethod
    async def _known_categories(conn: Connection, tenant_id: uuid.UUID) -> list[str]:
        return list(known_categories((await load_settings(conn, tenant_id)).categories))

    async def place(
        self, tenant_id: uuid.UUID, request: HoldRequest, actor: Actor
    ) -> dict[str, Any]:
        """Categories must be ones the tenant knows (checked here, against the settings
        the same transaction reads), and an expiry in the future."""
        hold_id = uuid.uuid4()
        check_expiry(request.expires_at)
        async with self._db.tenant_tx(tenant_id) as conn:
            categories = check_categories(
                request.categories, await self._known_categories(conn, tenant_id)
            )
            # The same locks the destroy paths take, so a hold and a shred are ordered.
            if request.subject_ref_hash is None:
                await conn.fetchval(Q.lock_tenant_holds, tenant_id)
            else:
                await conn.fetchval(Q.lock_subject_by_ref, tenant_id, request.subject_ref_hash)
            await conn.execute(
                Q.insert, tenant_id, hold_id, request.subject_ref_hash,
                list(categories) if categories else None, request.reason,
                request.reference, request.note, actor.api_key_id, request.expires_at,
            )  # fmt: skip
            await journal(conn, tenant_id, hold_id, HoldAction.PLACED, actor, None)
            await record_hold(conn, tenant_id, hold_id)  # a restored backup keeps it
            hold = await self._read(conn, tenant_id, hold_id)
        events.hold_placed(tenant_id, hold_id, actor.api_key_id)
        await self._make_durable(tenant_id, hold_id)
        return hold

    async def get(self, tenant_id: uuid.UUID, hold_id: uuid.UUID) -> dict[str, Any]:
        async with self._db.tenant_tx(tenant_id) as conn:
            return await self._read(conn, tenant_id, hold_id)

    async def _read(
        self, conn: Connection, tenant_id: uuid.UUID, hold_id: uuid.UUID
    ) -> dict[str, Any]:
        row = await conn.fetchrow(Q.get, tenant_id, hold_id)
        if row is None:
            raise NotFound("no such hold")
        hold = dict(row)
        hold["events"] = [dict(e) for e in await conn.fetch(Q.events, tenant_id, hold_id)]
        return hold

    async def impact(self, tenant_id: uuid.UUID, hold_id: uuid.UUID) -> list[dict[str, Any]]:
        """By category, the keys held erasures keep only because of this hold: what a
        release would shred now. (Data past its retention that this hold keeps is not
        counted; retention runs every few minutes after a release.)"""
        async with self._db.tenant_tx(tenant_id) as conn:
            if await conn.fetchrow(Q.get, tenant_id, hold_id) is None:
                raise NotFound("no such hold")
            rows = await conn.fetch(Q.impact, tenant_id, hold_id)
        return [dict(r) for r in rows]

    async def list(
        self, tenant_id: uuid.UUID, *, active: bool, subject_ref_hash: bytes | None,
        after: tuple[datetime, uuid.UUID] | None, limit: int, reason: str | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        if reason is not None and reason not in set(HoldReason):
            raise InvalidInput(f"reason must be one of {', '.join(HoldReason)}", field="reason")
        async with self._db.tenant_tx(tenant_id) as conn:
            rows = await conn.fetch(
                Q.list, tenant_id, active, subject_ref_hash,
                after[0] if after else None, after[1] if after else None, limit, reason,
            )  # fmt: skip
        return [dict(r) for r in rows]

    async def amend(
        self, tenant_id: uuid.UUID, hold_id: uuid.UUID, changes: dict[str, Any], actor: Actor
    ) -> dict[str, Any]:
        """Extend the expiry (or remove it) and annotate. Anything that would end the
        hold sooner is a release in disguise (check_new_expiry), so it is refused."""
        async with self._db.tenant_tx(tenant_id) as conn:
            row = await conn.fetchrow(Q.get_for_update, tenant_id, hold_id)
            if row is None:
                raise NotFound("no such hold")
            if row["released_at"] is not None:
                raise Conflict("this hold was released")
            expires_at, note = row["expires_at"], row["note"]
            if "expires_at" in changes:
                if not row["in_force"]:
                    raise Conflict("this hold has expired; place a new one")
                new_expiry = check_expiry(changes["expires_at"])
                check_new_expiry(row["expires_at"], new_expiry)
                expires_at = new_expiry
                await journal(conn, tenant_id, hold_id, HoldAction.EXTENDED, actor, None)
            if "note" in changes:
                note = changes["note"]
                await journal(conn, tenant_id, hold_id, HoldAction.ANNOTATED, actor, None)
            await conn.execute(Q.update_terms, tenant_id, hold_id, expires_at, note)
            if expires_at != row["expires_at"]:
                await record_hold(conn, tenant_id, hold_id)
            hold = await self._read(conn, tenant_id, hold_id)
        if expires_at != row["expires_at"]:
            await self._make_durable(tenant_id, hold_id)
        return hold

    async def release(
        self, tenant_id: uuid.UUID, hold_id: uuid.UUID, reason: str, actor: Actor
    ) -> tuple[bool, dict[str, Any]]:
        """(released, hold). Litigation and law-enforcement holds need two people: the
        first call records the request and answers (False, hold); a key of another
        person (second_person_refusal) confirms it within RELEASE_REQUEST_LAPSES_AFTER."""
        if not reason or len(reason) > MAX_RELEASE_REASON_LENGTH:
            raise InvalidInput(
                f"reason must be 1-{MAX_RELEASE_REASON_LENGTH} characters", field="reason"
            )
        async with self._db.tenant_tx(tenant_id) as conn:
            row = await conn.fetchrow(Q.get_for_update, tenant_id, hold_id)
            if row is None:
                raise NotFound("no such hold")
            if row["released_at"] is not None:
                raise Conflict("this hold was released already")
            if HoldReason(row["reason"]) in TWO_KEY_RELEASE:
                pending = release_request_pending(row["release_requested_at"], datetime.now(UTC))
                if not pending:
                    await self._key_holder(conn, tenant_id, actor.api_key_id, asking=True)
                    await conn.execute(Q.request_release, tenant_id, hold_id, actor.api_key_id)
                    await journal(
                        conn, tenant_id, hold_id, HoldAction.RELEASE_REQUESTED, actor, reason
                    )
                    # Recorded, so that a replay tells a later withdrawal apart from it.
                    await record_hold(conn, tenant_id, hold_id)
                    return False, await self._read(conn, tenant_id, hold_id)
                refusal = second_person_refusal(
                    await self._key_holder(conn, tenant_id, row["release_requested_by"]),
                    await self._key_holder(conn, tenant_id, actor.api_key_id),
                )
                if refusal is not None:
                    raise Conflict(refusal)
            await conn.execute(Q.release, tenant_id, hold_id, actor.api_key_id)
            await record_hold(conn, tenant_id, hold_id)
            await journal(conn, tenant_id, hold_id, HoldAction.RELEASED, actor, reason)
            # API.md: erasures waiting on it proceed at once (the executor retries them).
            await notify(conn, ERASURES_DUE, tenant_id)
            hold = await self._read(conn, tenant_id, hold_id)
            await emit_hold_released(conn, tenant_id, hold, actor.api_key_id)
        events.hold_released(tenant_id, hold_id, actor.api_key_id)
        await self._make_durable(tenant_id, hold_id)
        return True, hold

    async def withdraw_release(
        self, tenant_id: uuid.UUID, hold_id: uuid.UUID, actor: Actor
    ) -> dict[str, Any]:
        """Withdraw a pending release request (the one who asked, or the one asked to
        confirm, declining): the hold stays, and a release starts from the first step."""
        async with self._db.tenant_tx(tenant_id) as conn:
            row = await conn.fetchrow(Q.get_for_update, tenant_id, hold_id)
            if row is None:
                raise NotFound("no such hold")
            if row["released_at"] is not None or not release_request_pending(
                row["release_requested_at"], datetime.now(UTC)
            ):
                raise Conflict("no release of this hold is waiting for confirmation")
            await conn.execute(Q.withdraw_release, tenant_id, hold_id)
            await journal(conn, tenant_id, hold_id, HoldAction.RELEASE_WITHDRAWN, actor, None)
            # A restored backup must not bring the request back (a confirmable request
            # would let one person end the hold): the ledger says it was withdrawn.
            await record_hold(conn, tenant_id, hold_id)
            hold = await self._read(conn, tenant_id, hold_id)
        await self._make_durable(tenant_id, hold_id)
        return hold

    @staticmethod
    async def _key_holder(
        conn: Connection, tenant_id: uuid.UUID, key_id: uuid.UUID, *, asking: bool = False
    ) -> KeyHolder:
        row = await conn.fetchrow(K.key_holder, tenant_id, key_id)
        assert row is not None, "a hold's journal names a key of its own tenant"
        if asking and row["owner"] is None:
            raise Conflict("two-person releases need keys that name their owner")
        return KeyHolder(
            row["id"],
            row["owner"],
            row["revoked"],
            row["expired"],
            frozenset(row["lineage_ids"]),
            frozenset(row["lineage_owners"]),
        )


async def journal(
    conn: Connection, tenant_id: uuid.UUID, hold_id: uuid.UUID, action: HoldAction,
    actor: Actor | None, reason: str | None,
) -> None:  # fmt: skip
    """A row of the hold's journal: what, who (API key), from where (IP), why."""
    await conn.execute(
        Q.journal, tenant_id, hold_id, action, actor.api_key_id if actor else None,
        actor.ip if actor else None, reason,
    )  # fmt: skip
