"""Instruction entries for four more standing instructions a restore must not undo
(migration 0031), recorded through the same outbox (ledger_controls.record_instruction)
in the transaction that makes the change, published inline before the answer:

- `restriction`: a subject's restriction of processing (Art. 18) placed or lifted: the
  subject's internal id and keyed hash (never the reference), when the restriction in
  force started (null: lifted), and `change`, the change's place in the order of the
  subject's restriction changes (migration 0036: counted under the subject's row lock,
  so in the order the changes took effect, which transaction start times are not). No
  reason: it is free text about the person.
- `retention`: the tenant's retention policy after a settings change that touched it
  (per category delete_after_days and keep_at_least_days, and the pending shortenings of
  statutory retention). Numbers only.
- `console_session`: a console session ended (signed out, or replaced by signing in
  again in the same browser): its id.
- `webhook`: a webhook endpoint deleted: its id.

On start, `replay_standing` applies the entries after the database's ledger head (after
ledger_controls.replay_controls). The newest record of each thing is the tenant's
standing instruction, and the restored database, older, takes it: for a restriction the
one with the highest `change` (an entry recorded before migration 0036 has none and
counts below every one that has; among those, by when its row was written), for the
others by when the row was written.

- A restriction is re-applied (with its recorded start; a subject the backup predates
  comes back as an empty restricted subject, so nothing new is written for it, in the
  generation after those its replayed erasures shredded) unless a later record lifts
  it. Lifting is recorded too, and a recorded lift ends a restriction the restored
  database holds from before it: re-restricting a subject lifted since would not be the
  safe side, since a restriction freezes deletion (retention skips its data) and stops
  the application's reads. A record whose `change` the database has counted already
  (its own, published again) changes nothing; one it applies sets the database's count,
  which goes on from there.
- Retention comes back as last set. What a shorter retention in force since the backup
  shredded is in the ledger as destroyed keys, which start-up destroys again, so it
  stays bound; a later lengthening, which the tenant made after the shortening, stands
  (it no more brings back what was shredded than it did on the live database).
- An ended console session and a deleted webhook endpoint stay dead: the session row is
  deleted again; the endpoint is deleted again (secret destroyed, queued deliveries
  cancelled).

Running it twice changes nothing the first run did not.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog

from vault.db.database import Connection
from vault.db.sql import Queries
from vault.domain.tenant_settings import TenantSettings
from vault.services.ledger_controls import newest_facts, record_instruction
from vault.services.ledger_instructions import CONSOLE_SESSION, RESTRICTION, RETENTION, WEBHOOK

log = structlog.get_logger("datavault.ledger")

Q = Queries("ledger_instructions")
SUBJECTS = Queries("subjects")
TENANTS = Queries("tenants")
CONSOLE = Queries("console")
WEBHOOKS = Queries("webhooks")


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def record_restriction(
    conn: Connection, tenant_id: uuid.UUID, subject_id: uuid.UUID, ref_hash: bytes,
    restricted_at: datetime | None, change: int,
) -> None:  # fmt: skip
    """The subject's restriction as it stands in this transaction (None: lifted), made
    by its restriction change number `change` (subjects.restriction_changes)."""
    fact = {
        "subject_id": str(subject_id),
        "subject_ref_hash": ref_hash.hex(),
        "restricted_at": _time(restricted_at),
        "change": change,
    }
    await record_instruction(conn, tenant_id, RESTRICTION, subject_id, fact)


async def record_retention(
    conn: Connection, tenant_id: uuid.UUID, settings: TenantSettings
) -> None:
    """The tenant's retention policy as stored in this transaction."""
    document = settings.to_document()
    fact = {"retention": document["retention"], "pending": document["pending"]}
    await record_instruction(conn, tenant_id, RETENTION, tenant_id, fact)


async def record_session_ended(
    conn: Connection, tenant_id: uuid.UUID, session_id: uuid.UUID
) -> None:
    await record_instruction(
        conn, tenant_id, CONSOLE_SESSION, session_id, {"session_id": str(session_id)}
    )


async def record_webhook_deleted(
    conn: Connection, tenant_id: uuid.UUID, endpoint_id: uuid.UUID
) -> None:
    await record_instruction(
        conn, tenant_id, WEBHOOK, endpoint_id, {"endpoint_id": str(endpoint_id)}
    )


@dataclass(frozen=True)
class StandingCounts:
    restrictions_restored: int = 0
    restrictions_lifted: int = 0
    retention_restored: int = 0
    sessions_ended: int = 0
    webhooks_deleted: int = 0


async def replay_standing(
    conn: Connection, tenant_id: uuid.UUID, entries: list[dict[str, Any]]
) -> StandingCounts:
    """Apply one tenant's entries of these kinds that the database may lack. A tenant the
    database does not know has nothing to apply to."""
    if not await conn.fetchval(Q.tenant_known, tenant_id):
        return StandingCounts()
    outcomes: list[str] = []
    for at, fact in newest_facts(entries, RESTRICTION, "subject_id"):
        outcomes.append(await _replay_restriction(conn, tenant_id, at, fact))
    for _, fact in newest_facts(entries, RETENTION, None):
        outcomes.append(await _replay_retention(conn, tenant_id, fact))
    for _, fact in newest_facts(entries, CONSOLE_SESSION, "session_id"):
        ended = await conn.execute(CONSOLE.delete_session, tenant_id, uuid.UUID(fact["session_id"]))
        outcomes.append("session_ended" if ended != "DELETE 0" else "unchanged")
    for _, fact in newest_facts(entries, WEBHOOK, "endpoint_id"):
        endpoint_id = uuid.UUID(fact["endpoint_id"])
        if await conn.fetchval(WEBHOOKS.delete_endpoint, tenant_id, endpoint_id) is None:
            outcomes.append("unchanged")  # deleted already, or created after the backup
            continue
        await conn.execute(WEBHOOKS.cancel_pending_of_endpoint, tenant_id, endpoint_id)
        outcomes.append("webhook_deleted")
    counts = StandingCounts(
        restrictions_restored=outcomes.count("restricted"),
        restrictions_lifted=outcomes.count("lifted"),
        retention_restored=outcomes.count("retention"),
        sessions_ended=outcomes.count("session_ended"),
        webhooks_deleted=outcomes.count("webhook_deleted"),
    )
    if counts != StandingCounts():
        log.warning("standing_instructions_restored", tenant_id=str(tenant_id), **counts.__dict__)
    return counts


async def _replay_restriction(
    conn: Connection, tenant_id: uuid.UUID, recorded_at: datetime, fact: dict[str, Any]
) -> str:
    ref_hash = bytes.fromhex(fact["subject_ref_hash"])
    restricted_at = datetime.fromisoformat(fact["restricted_at"]) if fact["restricted_at"] else None
    change: int | None = fact.get("change")  # None: recorded before migration 0036
    known = await conn.fetchrow(Q.subject_by_hash_for_update, tenant_id, ref_hash)
    if known is not None and change is not None:
        if known["restriction_changes"] >= change:
            return "unchanged"  # the database made this change, or one after it
        await conn.execute(Q.restriction_counted, tenant_id, known["id"], change)
    if restricted_at is None:
        if known is None or known["restricted_at"] is None:
            return "unchanged"
        if change is not None:
            lifted = await conn.fetchval(Q.lift_counted_restriction, tenant_id, known["id"])
        else:
            lifted = await conn.fetchval(
                Q.lift_recorded_restriction, tenant_id, known["id"], recorded_at
            )
        return "lifted" if lifted is not None else "unchanged"
    if known is None:
        subject_id = uuid.UUID(fact["subject_id"])
        inserted = await conn.fetchval(
            Q.restricted_subject, tenant_id, subject_id, ref_hash, restricted_at, change or 0
        )
        return "restricted" if inserted is not None else "unchanged"
    if await conn.fetchval(Q.restore_restriction, tenant_id, known["id"], restricted_at) is None:
        return "unchanged"
    # As when it was placed: the subject's playback links end with it, for good.
    await conn.execute(SUBJECTS.drop_playback_links, tenant_id, known["id"])
    return "restricted"


async def _replay_retention(conn: Connection, tenant_id: uuid.UUID, fact: dict[str, Any]) -> str:
    document = await conn.fetchval(TENANTS.settings_for_update, tenant_id)
    current = TenantSettings.from_document(json.loads(document) if document else {})
    recorded = TenantSettings.from_document(
        {"retention": fact["retention"], "pending": fact["pending"]}
    )
    # A category the record lacks keeps the restored rule (a rule is never dropped by a
    # settings change, so none should be missing; if one is, it is not loosened to none).
    retention = {**current.retention, **recorded.retention}
    restored = replace(current, retention=retention, pending=recorded.pending)
    if restored.to_document() == current.to_document():
        return "unchanged"
    await conn.execute(TENANTS.store_settings, tenant_id, json.dumps(restored.to_document()))
    return "retention"
