"""Instruction entries that keep a restore from loosening a control (migration 0030).

Besides what an erasure kept and the holds (vault/services/ledger_instructions.py), a
backup restored after any of these changes would undo it: a cancelled erasure would run,
a scheduled one would be forgotten, a revoked key would work again, a requested closure
would be forgotten and a cancelled one would run. So each is recorded, in the transaction
that makes it, through the same outbox into the same hash chain:

- `erasure_request`: an erasure's state before it shreds, when it is asked for (scheduled),
  asked for again (extended to a later generation) or cancelled. Pseudonymous like the
  `erasure` entry: the subject's keyed hash and internal id, never the reference; no
  free text.
- `api_key`: a key's revocation (its id and when).
- `closure`: a tenant's closure requested (when, due when, by which key) or cancelled
  (which request).

On start, `replay_controls` applies the entries after the database's ledger head, after
`ledger_instructions.replay`, and only ever tightens: a missing erasure comes back as last
recorded (a scheduled one runs when due; a cancelled one is there, cancelled), a known
scheduled one is cancelled or extended as recorded; a key is revoked; a closure comes back
with its due date, and one the tenant cancelled stays cancelled. Of several entries for
one thing, the newest recorded counts (`destroyed_at`: when the row was written; a
restored database republishes its unpublished rows later, with their old times). Running
it twice changes nothing the first run did not.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from vault.db.database import Connection
from vault.db.sql import Queries
from vault.domain.erasures import ErasureStatus
from vault.services.erasure_transitions import transition
from vault.services.ledger_instructions import API_KEY, CLOSURE, ERASURE_REQUEST

log = structlog.get_logger("datavault.ledger")

Q = Queries("ledger_instructions")

RESTORED = "restored from the shred ledger"
CLOSING, ACTIVE = "closing", "active"


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


async def record_instruction(
    conn: Connection, tenant_id: uuid.UUID, kind: str, key_id: uuid.UUID, fact: dict[str, Any]
) -> None:
    """An instruction entry into the outbox, in the caller's transaction."""
    # No erasure_id: these rows hold up no erasure's completion.
    await conn.execute(Q.record, tenant_id, kind, key_id, None, json.dumps(fact))


async def record_erasure_request(
    conn: Connection, tenant_id: uuid.UUID, erasure_id: uuid.UUID
) -> None:
    """The erasure as it stands in this transaction (a cancellation), into the outbox:
    dv_record_erasure_request (migration 0040) builds the entry, as the request
    statement does for the ones it schedules or extends. One statement, which raises if
    the erasure is not this transaction's to see."""
    recorded = await conn.fetch(Q.record_erasure_request, tenant_id, erasure_id)
    assert recorded, "an erasure records itself in its own transaction"


async def record_key_revoked(
    conn: Connection, tenant_id: uuid.UUID, key_id: uuid.UUID, revoked_at: datetime
) -> None:
    await record_instruction(
        conn, tenant_id, API_KEY, key_id, {"key_id": str(key_id), "revoked_at": _time(revoked_at)}
    )


async def record_closure(
    conn: Connection, tenant_id: uuid.UUID, status: str, requested_at: datetime,
    due_at: datetime | None, requested_by: uuid.UUID | None,
) -> None:  # fmt: skip
    """`status` closing (requested) or active (that request, `requested_at`, cancelled)."""
    fact = {
        "status": status,
        "requested_at": _time(requested_at),
        "due_at": _time(due_at),
        "requested_by": str(requested_by) if requested_by else None,
    }
    await record_instruction(conn, tenant_id, CLOSURE, tenant_id, fact)


@dataclass(frozen=True)
class ControlCounts:
    erasures_rescheduled: int = 0
    erasures_cancelled: int = 0
    erasures_extended: int = 0
    keys_revoked: int = 0
    closures_restored: int = 0
    closures_cancelled: int = 0


def newest_facts(
    entries: list[dict[str, Any]], kind: str, id_field: str | None
) -> list[tuple[datetime, dict[str, Any]]]:
    """The newest recorded fact of each thing of `kind`, with when its row was written:
    the one rule of which instruction stands, for every kind a restore replays. By the
    fact's `change` number where it has one (a restriction, migration 0036), then by the
    row's time, stamped at its insert under the lock that orders changes to that thing
    (ledger_instructions.sql `record`). Neither ledger order nor publishing time says
    which is newer: a restored database republishes its unpublished rows later, with
    their old times. `id_field` None: one thing per tenant."""
    newest: dict[str, tuple[tuple[int, datetime], dict[str, Any]]] = {}
    for entry in entries:
        if entry["key_kind"] != kind:
            continue
        at, fact = datetime.fromisoformat(entry["destroyed_at"]), entry["fact"]
        order = (int(fact.get("change") or 0), at)
        thing = fact[id_field] if id_field is not None else ""
        if thing not in newest or order >= newest[thing][0]:
            newest[thing] = (order, fact)
    return [(order[1], fact) for order, fact in newest.values()]


async def replay_controls(
    conn: Connection, tenant_id: uuid.UUID, entries: list[dict[str, Any]]
) -> ControlCounts:
    """Apply one tenant's entries of these kinds that the database may lack. After the
    erasures that shredded are restored (ledger_instructions.replay), so one of those is
    not scheduled again. A tenant the database does not know has nothing to apply to."""
    if not await conn.fetchval(Q.tenant_known, tenant_id):
        return ControlCounts()
    outcomes: list[str] = []
    for _, fact in newest_facts(entries, ERASURE_REQUEST, "erasure_id"):
        outcomes.append(await _replay_erasure_request(conn, tenant_id, fact))
    for _, fact in newest_facts(entries, API_KEY, "key_id"):
        revoked = await conn.fetchval(
            Q.revoke_key, tenant_id, uuid.UUID(fact["key_id"]), _parse_time(fact["revoked_at"])
        )
        outcomes.append("key_revoked" if revoked else "unchanged")
    for fact in _closures(entries):
        outcomes.append(await _replay_closure(conn, tenant_id, fact))
    counts = ControlCounts(
        erasures_rescheduled=outcomes.count("rescheduled"),
        erasures_cancelled=outcomes.count("cancelled"),
        erasures_extended=outcomes.count("extended"),
        keys_revoked=outcomes.count("key_revoked"),
        closures_restored=outcomes.count("closure_restored"),
        closures_cancelled=outcomes.count("closure_cancelled"),
    )
    if counts != ControlCounts():
        log.warning("controls_restored", tenant_id=str(tenant_id), **counts.__dict__)
    return counts


def _closures(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tenant's newest closure record (one closure at a time per tenant)."""
    closures = [e for e in entries if e["key_kind"] == CLOSURE]
    if not closures:
        return []
    return [max(closures, key=lambda e: datetime.fromisoformat(e["destroyed_at"]))["fact"]]


async def _replay_erasure_request(
    conn: Connection, tenant_id: uuid.UUID, fact: dict[str, Any]
) -> str:
    erasure_id = uuid.UUID(fact["erasure_id"])
    recorded = ErasureStatus(fact["status"])
    subject_id = uuid.UUID(fact["subject_id"]) if fact["subject_id"] else None
    generation: int | None = fact["generation"]
    known = await conn.fetchrow(Q.erasure_state_for_update, tenant_id, erasure_id)
    if known is not None:
        if known["status"] != ErasureStatus.SCHEDULED:
            return "unchanged"  # it ran or was cancelled: the database knows more
        if recorded == ErasureStatus.CANCELLED:
            # The tenant took it back within its grace period: it must not run.
            await transition(
                conn, tenant_id, erasure_id, ErasureStatus.SCHEDULED, ErasureStatus.CANCELLED,
                detail=RESTORED,
            )  # fmt: skip
            return "cancelled"
        if subject_id is not None and generation is not None:
            return await _extend(conn, tenant_id, fact, subject_id, generation)
        return "unchanged"
    if subject_id is not None and not await conn.fetchval(Q.subject_known, tenant_id, subject_id):
        # The subject came after the backup, and so did all its data: nothing to shred.
        subject_id, generation = None, None
    inserted = await conn.fetchval(
        Q.restore_erasure_request, tenant_id, erasure_id,
        bytes.fromhex(fact["subject_ref_hash"]), subject_id, generation,
        fact["from_generation"] if subject_id is not None else None, recorded,
        _parse_time(fact["requested_at"]), uuid.UUID(fact["requested_by"]),
        _parse_time(fact["not_before"]), _parse_time(fact["due_at"]), fact["braked"],
    )  # fmt: skip
    if inserted is None:
        # The subject has another open erasure in the restored database: it covers these
        # generations too (one open erasure per subject).
        if recorded == ErasureStatus.SCHEDULED and subject_id is not None and generation:
            return await _extend(conn, tenant_id, fact, subject_id, generation)
        return "unchanged"
    await conn.execute(Q.erasure_restored, tenant_id, erasure_id, recorded)
    if subject_id is not None and generation is not None:
        # Later writes start after the generations it covers, as when it was asked for.
        await conn.execute(Q.past_erased_generation, tenant_id, subject_id, generation)
    return "rescheduled" if recorded == ErasureStatus.SCHEDULED else "unchanged"


async def _extend(
    conn: Connection, tenant_id: uuid.UUID, fact: dict[str, Any], subject_id: uuid.UUID,
    generation: int,
) -> str:  # fmt: skip
    if fact["status"] != ErasureStatus.SCHEDULED:
        return "unchanged"
    ref_hash = bytes.fromhex(fact["subject_ref_hash"])
    extended = await conn.fetchval(Q.extend_scheduled, tenant_id, ref_hash, subject_id, generation)
    await conn.execute(Q.past_erased_generation, tenant_id, subject_id, generation)
    return "extended" if extended else "unchanged"


async def _replay_closure(conn: Connection, tenant_id: uuid.UUID, fact: dict[str, Any]) -> str:
    requested_at = _parse_time(fact["requested_at"])
    if fact["status"] == CLOSING:
        requested_by = uuid.UUID(fact["requested_by"]) if fact["requested_by"] else None
        restored = await conn.fetchval(
            Q.restore_closure, tenant_id, requested_at, _parse_time(fact["due_at"]), requested_by
        )
        return "closure_restored" if restored else "unchanged"
    cancelled = await conn.fetchval(Q.drop_cancelled_closure, tenant_id, requested_at)
    return "closure_cancelled" if cancelled else "unchanged"
