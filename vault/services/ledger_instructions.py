"""Instruction entries of the shred ledger: what a restored backup must not forget besides
the keys destroyed since it was taken.

The ledger's key entries make a restored vault destroy again what was shredded. They do
not say what an erasure kept (statutory retention, a hold) nor that a hold was placed:
a backup from before either would serve what was kept as ordinary data, and let one key
delete what a hold kept. So two more kinds of entry travel through the same outbox (in
the transaction that makes the change) into the same hash chain:

- `erasure`: written when an erasure first shreds: its id, the pseudonymous subject id
  (the reference's keyed hash, hex, as receipts carry it; never the reference), the
  subject's internal id, the generations it covers, when it was asked for and is due,
  and every item (key id, category, shredded / held by which holds / retained until).
- `hold`: written when a hold is placed, its expiry moves, a two-person release is
  asked for or withdrawn, or it is released: its id, reason, scope (subject hash or the
  whole tenant; categories or all) and expiry, its pending release request, and when
  and by which key it was released. Free text (case reference, note) stays out.

On start, before serving, `replay` applies the entries after the database's ledger head
(those a restored backup cannot know): a missing hold is placed again as last recorded;
a hold the database has in an older state only catches up (an expiry later or removed,
a release), the ways a hold can change at all, and loses a pending release request the
newest record does not show (withdrawn since, or asked for before an older record:
fail safe, the hold stays and a release starts again from its first step); a missing
erasure comes back held over its generations with its items, so what it kept is
compliance-only again and the held queue shreds it when due, never before the
`kept_until` it stated (or, if it kept nothing, waiting for the publisher, which
completes it). Replaying twice changes nothing the first did not.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from vault.db.database import Connection
from vault.db.sql import Queries
from vault.domain.erasures import ErasureStatus
from vault.domain.holds import HoldAction

log = structlog.get_logger("datavault.ledger")

Q = Queries("ledger_instructions")

ERASURE = "erasure"
HOLD = "hold"
# What tightens a control besides (migration 0030; recorded and replayed by
# vault/services/ledger_controls.py): an erasure's state before it shreds, a revoked API
# key, a tenant's closure.
ERASURE_REQUEST = "erasure_request"
API_KEY = "api_key"
CLOSURE = "closure"
# Migration 0031 (vault/services/ledger_standing.py): a restriction of processing placed or
# lifted, a retention policy changed, a console session ended, a webhook endpoint deleted.
RESTRICTION = "restriction"
RETENTION = "retention"
CONSOLE_SESSION = "console_session"
WEBHOOK = "webhook"
INSTRUCTION_KINDS = frozenset(
    {ERASURE, HOLD, ERASURE_REQUEST, API_KEY, CLOSURE, RESTRICTION, RETENTION, CONSOLE_SESSION,
     WEBHOOK}
)  # fmt: skip
# holds.reference is required; the ledger does not carry the tenant's free text.
RESTORED_REFERENCE = "(restored from the shred ledger)"


def is_instruction(entry: dict[str, Any]) -> bool:
    return entry.get("key_kind") in INSTRUCTION_KINDS


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


async def record_erasure(conn: Connection, tenant_id: uuid.UUID, erasure_id: uuid.UUID) -> None:
    """The erasure as it stands in this transaction (after its shred), into the outbox."""
    await record_erasures(conn, tenant_id, [erasure_id])


async def record_erasures(
    conn: Connection, tenant_id: uuid.UUID, erasure_ids: Sequence[uuid.UUID]
) -> None:
    """What record_erasure does for several erasures, in three round trips for them all
    (the executor records a batch of shreds at once: issue 19, fourth round)."""
    identities = {
        row["id"]: row["identity"]
        for row in await conn.fetch(Q.erasure, tenant_id, list(erasure_ids))
    }
    items: dict[uuid.UUID, list[Any]] = {}
    for item in await conn.fetch(Q.erasure_items, tenant_id, list(erasure_ids)):
        items.setdefault(item["erasure_id"], []).append(item)
    facts = []
    for erasure_id in erasure_ids:
        identity = identities.get(erasure_id)
        assert identity is not None, "an erasure records itself in its own transaction"
        fact = _erasure_fact(identity, items.get(erasure_id, []))
        facts.append((tenant_id, ERASURE, erasure_id, erasure_id, json.dumps(fact)))
    await conn.executemany(Q.record, facts)


def _erasure_fact(identity: str, items: Sequence[Any]) -> dict[str, Any]:
    """`identity`: what every ledger entry about an erasure says of it, as the database
    builds it for both kinds (dv_erasure_identity, migration 0040: the `erasure_request`
    instruction is written by the request statement itself), the one shape both restore
    replays read; then the shred's items."""
    return {
        **json.loads(identity),
        "items": [
            {
                "key_id": str(i["key_id"]),
                "category": i["category"],
                "outcome": i["outcome"],
                "destroyed_at": _time(i["destroyed_at"]),
                "hold_ids": [str(h) for h in i["hold_ids"]] if i["hold_ids"] else None,
                "kept_until": _time(i["kept_until"]),
            }
            for i in items
        ],
    }


async def record_hold(conn: Connection, tenant_id: uuid.UUID, hold_id: uuid.UUID) -> None:
    """The hold as it stands in this transaction (placed, amended or released)."""
    row = await conn.fetchrow(Q.hold, tenant_id, hold_id)
    assert row is not None, "a hold records itself in its own transaction"
    ref_hash = row["subject_ref_hash"]
    fact = {
        "hold_id": str(row["id"]),
        "subject_ref_hash": bytes(ref_hash).hex() if ref_hash is not None else None,
        "categories": list(row["categories"]) if row["categories"] is not None else None,
        "reason": row["reason"],
        "placed_at": _time(row["placed_at"]),
        "placed_by": str(row["placed_by"]),
        "expires_at": _time(row["expires_at"]),
        "released_at": _time(row["released_at"]),
        "released_by": str(row["released_by"]) if row["released_by"] else None,
        # A withdrawn request must not come back with a restore (replay drops one the
        # newest record does not show); a pending one is never restored (fail safe).
        "release_requested_at": _time(row["release_requested_at"]),
    }
    await conn.execute(Q.record, tenant_id, HOLD, hold_id, None, json.dumps(fact))


@dataclass(frozen=True)
class HoldTerms:
    expires_at: datetime | None
    released_at: datetime | None


def caught_up(known: HoldTerms, recorded: HoldTerms) -> HoldTerms:
    """A hold's terms after the ledger's newer record of them: only the ways a hold can
    change (an expiry later or removed; a release, which stays). A record older than
    what the database knows changes nothing, so replaying in any order, or twice, ends
    the same."""
    if known.expires_at is None or recorded.expires_at is None:
        expires_at = None
    else:
        expires_at = max(known.expires_at, recorded.expires_at)
    return HoldTerms(expires_at, known.released_at or recorded.released_at)


@dataclass(frozen=True)
class ReplayCounts:
    holds_restored: int = 0
    holds_released: int = 0
    erasures_restored: int = 0
    release_requests_dropped: int = 0
    # Which erasures were restored: the start-up shreds what of their generations this
    # database still holds (workers/erasure.py shred_restored), named in the ledger or not.
    restored_erasure_ids: tuple[uuid.UUID, ...] = ()


async def replay(
    conn: Connection, tenant_id: uuid.UUID, entries: list[dict[str, Any]]
) -> ReplayCounts:
    """Apply one tenant's instruction entries (in ledger order) the database may lack:
    holds first, since a restored erasure's items name them. A tenant created after the
    backup is not in it, and nor is anything of its to keep or protect: nothing to do."""
    if not await conn.fetchval(Q.tenant_known, tenant_id):
        return ReplayCounts()
    holds: dict[str, tuple[datetime, dict[str, Any]]] = {}
    erasures: dict[str, dict[str, Any]] = {}
    for entry in entries:
        fact = entry["fact"]
        if entry["key_kind"] == HOLD:
            # The newest record of each, by when it was written: a restored database
            # publishes its unpublished rows again later, with their old times.
            at = datetime.fromisoformat(entry["destroyed_at"])
            if fact["hold_id"] not in holds or at >= holds[fact["hold_id"]][0]:
                holds[fact["hold_id"]] = (at, fact)
        elif entry["key_kind"] == ERASURE:
            # One per erasure (its first shred), recorded in that shred's transaction.
            erasures.setdefault(fact["erasure_id"], {**fact, "shredded_at": entry["destroyed_at"]})
    restored = released = dropped = 0
    for _, fact in holds.values():
        outcome = await _replay_hold(conn, tenant_id, fact)
        restored += outcome == "restored"
        released += outcome == "released"
        dropped += await _drop_unrecorded_request(conn, tenant_id, fact)
    restored_erasures = [
        uuid.UUID(fact["erasure_id"])
        for fact in erasures.values()
        if await _replay_erasure(conn, tenant_id, fact)
    ]
    erased = len(restored_erasures)
    counts = ReplayCounts(restored, released, erased, dropped, tuple(restored_erasures))
    if counts != ReplayCounts():
        log.warning(
            "instructions_restored", tenant_id=str(tenant_id), holds_restored=restored,
            holds_released=released, erasures_restored=erased,
            release_requests_dropped=dropped,
        )  # fmt: skip
    return counts


async def _replay_hold(conn: Connection, tenant_id: uuid.UUID, fact: dict[str, Any]) -> str:
    hold_id = uuid.UUID(fact["hold_id"])
    released_by = uuid.UUID(fact["released_by"]) if fact["released_by"] else None
    recorded = HoldTerms(_parse_time(fact["expires_at"]), _parse_time(fact["released_at"]))
    known = await conn.fetchrow(Q.hold_for_update, tenant_id, hold_id)
    if known is None:
        ref_hash = fact["subject_ref_hash"]
        await conn.execute(
            Q.restore_hold, tenant_id, hold_id,
            bytes.fromhex(ref_hash) if ref_hash is not None else None,
            fact["categories"], fact["reason"], RESTORED_REFERENCE,
            _parse_time(fact["placed_at"]), uuid.UUID(fact["placed_by"]),
            recorded.expires_at, recorded.released_at, released_by,
        )  # fmt: skip
        await conn.execute(Q.journal, tenant_id, hold_id, HoldAction.PLACED, None)
        if recorded.released_at is not None:
            await conn.execute(Q.journal, tenant_id, hold_id, HoldAction.RELEASED, released_by)
        return "restored"
    before = HoldTerms(known["expires_at"], known["released_at"])
    after = caught_up(before, recorded)
    if after == before:
        return "unchanged"
    await conn.execute(
        Q.catch_up_hold, tenant_id, hold_id, after.expires_at, after.released_at, released_by
    )
    if after.expires_at != before.expires_at:
        await conn.execute(Q.journal, tenant_id, hold_id, HoldAction.EXTENDED, None)
    if before.released_at is None and after.released_at is not None:
        await conn.execute(Q.journal, tenant_id, hold_id, HoldAction.RELEASED, released_by)
        return "released"
    return "caught_up"


async def _drop_unrecorded_request(
    conn: Connection, tenant_id: uuid.UUID, fact: dict[str, Any]
) -> bool:
    """A pending two-person release request the hold's newest record does not show is
    dropped: it was withdrawn after the backup (or the record predates it, and then
    asking again is the whole cost). Never the other way: a request is not restored."""
    hold_id = uuid.UUID(fact["hold_id"])
    recorded = _parse_time(fact.get("release_requested_at"))
    dropped = await conn.fetchval(Q.drop_release_request, tenant_id, hold_id, recorded)
    if dropped is None:
        return False
    await conn.execute(Q.journal, tenant_id, hold_id, HoldAction.RELEASE_WITHDRAWN, None)
    return True


async def _replay_erasure(conn: Connection, tenant_id: uuid.UUID, fact: dict[str, Any]) -> bool:
    erasure_id = uuid.UUID(fact["erasure_id"])
    items = fact["items"]
    kept = any(i["outcome"] != "shredded" for i in items)
    status = ErasureStatus.HELD if kept else ErasureStatus.IN_PROGRESS
    subject_id = uuid.UUID(fact["subject_id"]) if fact["subject_id"] else None
    inserted = await conn.fetchval(
        Q.restore_erasure, tenant_id, erasure_id, bytes.fromhex(fact["subject_ref_hash"]),
        subject_id, fact["generation"], fact["from_generation"], status,
        _parse_time(fact["requested_at"]), uuid.UUID(fact["requested_by"]),
        _parse_time(fact["not_before"]), _parse_time(fact["due_at"]),
        _parse_time(fact["shredded_at"]),
    )  # fmt: skip
    if inserted is None:
        # The database knows it: as it was at the backup. Still scheduled there, it ran
        # since; it takes the state it ran into (its items, with what it kept and until
        # when), not a new run on the restored, older settings. Any later state: as is.
        caught_up = await conn.fetchval(
            Q.shredded_since, tenant_id, erasure_id, status, fact["generation"],
            fact["from_generation"], _parse_time(fact["shredded_at"]),
        )  # fmt: skip
        if caught_up is None:
            return False
    for item in items:
        await conn.execute(
            Q.restore_item, tenant_id, erasure_id, uuid.UUID(item["key_id"]), item["category"],
            item["outcome"], _parse_time(item["destroyed_at"]),
            [uuid.UUID(h) for h in item["hold_ids"]] if item["hold_ids"] else None,
            _parse_time(item["kept_until"]),
        )  # fmt: skip
    await conn.execute(Q.erasure_restored, tenant_id, erasure_id, status)
    if subject_id is not None and fact["generation"] is not None:
        await conn.execute(Q.past_erased_generation, tenant_id, subject_id, fact["generation"])
    return True
