"""Records: small JSON values, one sealed message per version under its own data key.

Replacing a record shreds the previous version (rectification leaves no readable old
value) unless a legal hold covers it; then the old version is kept, readable only
through the compliance scope's hold tooling.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crypto.records import open_record, seal_record
from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.domain.categories import check_category
from vault.domain.secret_text import SecretText
from vault.errors import Conflict, Gone, InvalidInput, MalformedInput, NotFound
from vault.services.keyring import KeyRing
from vault.services.subjects import (
    SubjectAccess,
    SubjectService,
    check_access,
    check_generation,
    check_writable,
    readable_generations,
)
from vault.services.tenants import load_settings

Q = Queries("records")

# API.md: records are at most 1 MiB of JSON.
MAX_RECORD_BYTES = 1024 * 1024
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
    try:
        json.loads(body, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError):
        raise MalformedInput("body is not valid JSON") from None
    except RecursionError:
        raise MalformedInput("body nests deeper than this vault parses") from None
    return body


def _reject_constant(name: str) -> None:
    # NaN and Infinity are not JSON (RFC 8259), whatever Python's parser tolerates.
    raise ValueError(f"{name} is not JSON")


class RecordService:
    def __init__(self, db: Database, keyring: KeyRing, subjects: SubjectService) -> None:
        self._db = db
        self._keyring = keyring
        self._subjects = subjects

    async def put(
        self, tenant_id: uuid.UUID, ref: SecretText, name: str, category: str | None, value: bytes
    ) -> RecordVersion:
        check_record_name(name)
        ref_hash = await self._subjects.ref_hash(tenant_id, ref)
        async with self._db.tenant_tx(tenant_id) as conn:
            # Under the subject's row lock: concurrent writes of one record queue here,
            # and the lock order (subject, then record) is the same for every writer.
            subject = await self._subjects.find_or_create(conn, tenant_id, ref, ref_hash, lock=True)
            check_writable(subject)
            current = await conn.fetchrow(Q.current_for_update, tenant_id, subject.id, name)
            if current is not None:
                if category is not None and category != current["category"]:
                    raise Conflict(f"record {name!r} keeps its category {current['category']!r}")
                category = current["category"]
            else:
                category = check_category(
                    category, (await load_settings(conn, tenant_id)).categories
                )
            data_key = await self._keyring.new_data_key_for_write(
                conn, tenant_id, subject.id, category, subject.generation, "record"
            )
            sealed = seal_record(data_key.key, value, data_key.content_context())
            if current is not None:
                await self._retire(conn, tenant_id, subject.id, current)
            inserted = await conn.fetchrow(
                Q.insert_next_version, tenant_id, subject.id, name, category, subject.generation,
                data_key.id, sealed, len(value),
            )  # fmt: skip
            assert inserted is not None
        return RecordVersion(
            name, category, inserted["version"], inserted["created_at"], created=current is None
        )

    async def _retire(
        self, conn: Connection, tenant_id: uuid.UUID, subject_id: uuid.UUID, current: Any
    ) -> None:
        """Shred the version being replaced; under hold keep it instead. The caller holds
        the subject's row lock."""
        try:
            await self._keyring.destroy_data_key_of_locked_subject(
                conn, tenant_id, subject_id, current["category"], current["data_key_id"]
            )
            shredded = True
        except Conflict:
            shredded = False
        await conn.execute(
            Q.retire_current, tenant_id, subject_id, current["name"], current["version"], shredded
        )

    async def get(
        self, tenant_id: uuid.UUID, ref: SecretText, name: str, access: SubjectAccess
    ) -> bytes:
        check_record_name(name)
        async with self._db.tenant_tx(tenant_id) as conn:
            subject = await self._subjects.find(
                conn, tenant_id, await self._subjects.ref_hash(tenant_id, ref)
            )
            check_access(subject, access)
            row = await conn.fetchrow(Q.get_current_with_key, tenant_id, subject.id, name)
            if row is None or row["value_sealed"] is None:
                if await conn.fetchval(Q.ever_existed, tenant_id, subject.id, name):
                    raise Gone("this record was deleted")
                raise NotFound("no such record")
            check_generation(
                await readable_generations(conn, subject, access), row["record_generation"]
            )
            data_key = await self._keyring.open_data_key(tenant_id, row)
        return open_record(data_key.key, bytes(row["value_sealed"]), data_key.content_context())

    async def list(
        self, tenant_id: uuid.UUID, ref: SecretText, access: SubjectAccess, *,
        after: tuple[datetime, str] | None, limit: int,
    ) -> list[RecordVersion]:  # fmt: skip
        async with self._db.tenant_tx(tenant_id) as conn:
            subject = await self._subjects.find(
                conn, tenant_id, await self._subjects.ref_hash(tenant_id, ref)
            )
            check_access(subject, access)
            hidden = sorted(await readable_generations(conn, subject, access) or ())
            rows = await conn.fetch(
                Q.list,
                tenant_id,
                subject.id,
                after[0] if after else None,
                after[1] if after else None,
                limit,
                hidden,
            )
        return [
            RecordVersion(r["name"], r["category"], r["version"], r["created_at"]) for r in rows
        ]

    async def delete(self, tenant_id: uuid.UUID, ref: SecretText, name: str) -> None:
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
                conn, tenant_id, subject.id, current["category"], current["data_key_id"]
            )
            await conn.execute(
                Q.retire_current, tenant_id, subject.id, name, current["version"], True
            )
