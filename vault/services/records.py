"""Records: small JSON values, one sealed message per version under its own data key.

Replacing a record shreds the previous version (rectification leaves no readable old
value) unless a legal hold covers it; then the old version is kept, readable only
through the compliance scope's hold tooling.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crypto.records import open_record, seal_record
from vault.db.database import Database, TenantFetchRow
from vault.db.sql import Queries
from vault.domain.categories import check_category
from vault.domain.json_input import parse_json
from vault.domain.subject_refs import SubjectRef
from vault.domain.tenant_settings import TenantSettings
from vault.errors import Conflict, Gone, InvalidInput, NotFound
from vault.services.keyring import KeyRing, record_object
from vault.services.subjects import (
    SubjectAccess,
    SubjectService,
    check_access,
    check_generation,
    check_writable,
    readable_generations,
    subject_from_columns,
)
from vault.services.transfers import (
    HELD_FOR_SECONDS,
    HELD_READ_ATTEMPTS,
    SubjectRead,
    TransferLease,
)

# What a compliance read of a kept version may read: restricted and erased data too.
COMPLIANCE_READ = SubjectAccess(may_read_restricted=True)

Q = Queries("records")

# API.md: records are at most 1 MiB of JSON.
MAX_RECORD_BYTES = 1024 * 1024
# Optimistic record writes before the locked path: one conflict is a concurrent write of
# the same subject; a second in a row means contention, which the lock queues fairly.
OPTIMISTIC_WRITE_ATTEMPTS = 2
RECORD_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


@dataclass(frozen=True)
class RecordVersion:
    name: str
    category: str
    version: int
    updated_at: datetime
    created: bool = False


def check_record_name(name: str) -> str:
    if not RECORD_NAME.match(name):
        raise InvalidInput("name must be 1-200 characters of A-Z a-z 0-9 . _ -", field="name")
    return name


def check_json(body: bytes) -> bytes:
    """A record's value is kept as the bytes sent, sealed: it must parse as JSON, but its
    strings never reach PostgreSQL as text, so the text rule does not apply to them."""
    parse_json(body)
    return body


class RecordService:
    def __init__(self, db: Database, keyring: KeyRing, subjects: SubjectService) -> None:
        self._db = db
        self._keyring = keyring
        self._subjects = subjects

    async def put(
        self,
        tenant_id: uuid.UUID,
        key: uuid.UUID | None,
        ref: SubjectRef,
        name: str,
        category: str | None,
        value: bytes,
    ) -> RecordVersion:
        """`key`: the caller's API key, if its liveness is left to these statements
        (Principal.key_to_check)."""
        check_record_name(name)
        ref_hash = await self._subjects.ref_hash(tenant_id, ref)
        # Usually two statements and no transaction around them: read the state
        # (records.sql write_state), make the new version's key here, and write if that
        # state still holds under the locks (`write`); a concurrent change means read
        # again. A new subject, record category or life, or repeated contention, takes
        # the locked path below, where the same write cannot find anything changed.
        for _ in range(OPTIMISTIC_WRITE_ATTEMPTS):
            state = await self._db.tenant_fetchrow(
                tenant_id, Q.write_state, key, ref_hash, name, category
            )
            if state is None or not state["ref_copy_live"] or state["subject_key_id"] is None:
                break
            written = await self._write(
                self._db.tenant_fetchrow, tenant_id, key, name, category, state, value
            )
            if written is not None:
                return written
        async with self._db.tenant_tx(tenant_id) as conn:

            async def fetchrow(_: uuid.UUID, query: str, *args: object) -> Any:
                return await conn.fetchrow(query, tenant_id, *args)

            if key is not None:
                # The key's liveness first, when it is left to the statements.
                await conn.fetchrow(Q.write_state, tenant_id, key, ref_hash, name, category)
            subject = await self._subjects.find_or_create(conn, tenant_id, ref, ref_hash, lock=True)
            state = await conn.fetchrow(Q.write_state, tenant_id, None, ref_hash, name, category)
            assert state is not None
            if state["subject_key_id"] is None:
                resolved = self._category(name, category, state)
                await self._keyring.subject_key_for_write(
                    conn, tenant_id, subject.id, resolved, subject.generation
                )
                state = await conn.fetchrow(
                    Q.write_state, tenant_id, None, ref_hash, name, resolved
                )
            written = await self._write(fetchrow, tenant_id, None, name, category, state, value)
            assert written is not None, "the record changed under its subject's lock"
            return written

    @staticmethod
    def _category(name: str, asked: str | None, state: Any) -> str:
        if state["current_version"] is not None:
            if asked is not None and asked != state["current_category"]:
                raise Conflict(f"record {name!r} keeps its category {state['current_category']!r}")
            return str(state["current_category"])
        settings = TenantSettings.from_document(json.loads(state["settings"] or "{}"))
        return check_category(asked, settings.categories)

    async def _write(
        self,
        fetchrow: TenantFetchRow,
        tenant_id: uuid.UUID,
        key: uuid.UUID | None,
        name: str,
        asked_category: str | None,
        state: Any,
        value: bytes,
    ) -> RecordVersion | None:
        """Seal `value` under a new data key, bound to the next version as `state` read it,
        and write it as that version if `state` still holds (None if not)."""
        subject = subject_from_columns(tenant_id, state)
        check_writable(subject)
        category = self._category(name, asked_category, state)
        data_key, wrapped = await self._keyring.unstored_data_key(
            tenant_id, subject.id, category, subject.generation, "record", state
        )
        version = state["next_version"]
        sealed = seal_record(
            data_key.key, value, data_key.content_context(record_object(name, version))
        )
        current = state["current_version"]
        written = await fetchrow(
            tenant_id, Q.write, key, subject.id, name, category, subject.generation, current,
            state["current_data_key_id"], version, data_key.id, data_key.subject_key.id,
            wrapped, sealed, len(value), state["kek_version"],
        )  # fmt: skip
        if written is None:
            return None
        return RecordVersion(
            name, category, written["version"], written["created_at"], created=current is None
        )

    async def get(
        self,
        tenant_id: uuid.UUID,
        key: uuid.UUID | None,
        ref: SubjectRef,
        name: str,
        access: SubjectAccess,
        hold: TransferLease | None = None,
    ) -> bytes:
        """The record's value. With `hold` (the request's transfer), the statement that
        finds the record records its data key as held by it (migration 0037), and the
        lease keeps it held and watched until it closes: the value, answered in one
        message, may wait in the process for as long as a stalled client makes it wait,
        and an erasure completes only once it has left (or the transfer was cut)."""
        check_record_name(name)
        ref_hash = await self._subjects.ref_hash(tenant_id, ref)
        if hold is None:
            row = await self._db.tenant_fetchrow(tenant_id, Q.read, key, ref_hash, name)
        else:
            for _ in range(HELD_READ_ATTEMPTS):
                row = await self._db.tenant_fetchrow(
                    tenant_id, Q.read_held, key, ref_hash, name, hold.id, HELD_FOR_SECONDS
                )
                if row is None or row["value_sealed"] is None or row["held"]:
                    break
                # The version found was replaced (its key shredded) after the statement's
                # snapshot and before its hold: the next read finds the new one.
            if row is not None and row["held"]:
                hold.held_from_read(row["id"], flushed=False)
        if row is None:
            raise NotFound("no such subject")
        subject = subject_from_columns(tenant_id, row)
        check_access(subject, access)
        if row["version"] is None or row["value_sealed"] is None:
            if row["ever_existed"]:
                raise Gone("this record was deleted")
            raise NotFound("no such record")
        check_generation(readable_generations(subject, access), row["record_generation"])
        if hold is not None:
            # KeyDestroyed if the statement found the key gone (it holds only live keys).
            await hold.claim(row["id"])
            hold.hold_until_closed(
                row["id"], SubjectRead(ref_hash, row["record_generation"], access)
            )
        data_key = await self._keyring.open_data_key(tenant_id, row)
        context = data_key.content_context(record_object(name, row["version"]))
        return open_record(data_key.key, bytes(row["value_sealed"]), context)

    async def list(
        self, tenant_id: uuid.UUID, key: uuid.UUID | None, ref: SubjectRef,
        access: SubjectAccess, *, after: tuple[datetime, str] | None, limit: int,
    ) -> list[RecordVersion]:  # fmt: skip
        ref_hash = await self._subjects.ref_hash(tenant_id, ref)
        rows = await self._db.tenant_fetch(
            tenant_id,
            Q.list_page,
            key,
            ref_hash,
            after[0] if after else None,
            after[1] if after else None,
            limit,
            access.may_read_restricted,
        )
        if not rows:
            raise NotFound("no such subject")
        check_access(subject_from_columns(tenant_id, rows[0]), access)
        return [
            RecordVersion(r["name"], r["category"], r["version"], r["created_at"])
            for r in rows
            if r["name"] is not None
        ]

    async def delete(self, tenant_id: uuid.UUID, ref: SubjectRef, name: str) -> None:
        check_record_name(name)
        async with self._db.tenant_tx(tenant_id) as conn:
            subject = await self._subjects.find(
                conn, tenant_id, await self._subjects.ref_hash(tenant_id, ref), lock=True
            )
            current = await conn.fetchrow(Q.current_for_update, tenant_id, subject.id, name)
            if current is None:
                if await conn.fetchval(Q.ever_existed, tenant_id, subject.id, name):
                    raise Gone("this record was deleted")
                raise NotFound("no such record")
            # Deleting needs the key gone: under hold, refuse (409) rather than keep it.
            await self._keyring.destroy_data_key_of_locked_subject(
                conn, tenant_id, subject.id, current["category"], current["generation"],
                current["data_key_id"],
            )  # fmt: skip
            await conn.execute(
                Q.retire_current, tenant_id, subject.id, name, current["version"], True
            )

    async def kept_versions(
        self, tenant_id: uuid.UUID, ref: SubjectRef, name: str
    ) -> Sequence[dict[str, Any]]:
        """The versions a hold kept when the record was replaced (compliance only: the
        caller checks the scope)."""
        check_record_name(name)
        async with self._db.tenant_tx(tenant_id) as conn:
            subject = await self._subjects.find(
                conn, tenant_id, await self._subjects.ref_hash(tenant_id, ref)
            )
            rows = await conn.fetch(Q.kept_versions, tenant_id, subject.id, name)
        return [dict(row) for row in rows]

    async def version_value(
        self, tenant_id: uuid.UUID, ref: SubjectRef, name: str, version: int,
        hold: TransferLease | None = None,
    ) -> bytes:  # fmt: skip
        """One version's value while its key lives (compliance only: the caller checks).
        With `hold` (the request's transfer), its data key is held, only while live
        (KeyDestroyed otherwise), and watched until the answer has left, as `get`'s."""
        check_record_name(name)
        ref_hash = await self._subjects.ref_hash(tenant_id, ref)
        async with self._db.tenant_tx(tenant_id) as conn:
            subject = await self._subjects.find(conn, tenant_id, ref_hash)
            row = await conn.fetchrow(Q.version, tenant_id, subject.id, name, version)
        if row is None:
            raise NotFound("no such record version")
        if row["value_sealed"] is None or row["wrapped_key"] is None:
            raise Gone("this record version was shredded")
        if hold is not None:
            await hold.claim(row["id"])
            hold.hold_until_closed(
                row["id"], SubjectRead(ref_hash, row["generation"], COMPLIANCE_READ)
            )
        data_key = await self._keyring.open_data_key(tenant_id, row)
        context = data_key.content_context(record_object(name, row["version"]))
        return open_record(data_key.key, bytes(row["value_sealed"]), context)
