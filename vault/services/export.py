"""Subject export (right of access, portability): one ZIP streamed as it is built.

Nothing is spooled to disk and memory stays bounded: records are small, and each
artefact's plaintext flows from the blob store through the cipher into the ZIP entry.
Entries are stored uncompressed (recordings are compressed already) as ZIP64, with the
size and CRC-32 recorded at upload, so no entry needs a second pass.
"""

from __future__ import annotations

import json
import re
import uuid
import zlib
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime
from typing import Any

from stream_zip import NO_COMPRESSION_64, async_stream_zip

from crypto.records import open_record
from vault.db.database import Database
from vault.db.sql import Queries
from vault.domain.secret_text import SecretText
from vault.services.artefacts import Artefact, ArtefactService
from vault.services.keyring import KeyRing
from vault.services.subjects import (
    SubjectAccess,
    SubjectService,
    check_access,
    readable_generations,
)

RECORDS = Queries("records")
_ENTRY_MODE = 0o600
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]")
# Artefacts per export page while walking the subject (bounded memory for big subjects).
_PAGE = 200


def _entry_name(artefact: Artefact) -> str:
    filename = _UNSAFE.sub("_", artefact.filename or "")[:120].strip(". ") or "content"
    return f"artefacts/{artefact.id}/{filename}"


class ExportService:
    def __init__(
        self, db: Database, keyring: KeyRing, subjects: SubjectService, artefacts: ArtefactService
    ) -> None:
        self._db = db
        self._keyring = keyring
        self._subjects = subjects
        self._artefacts = artefacts

    async def export(
        self, tenant_id: uuid.UUID, ref: SecretText, access: SubjectAccess
    ) -> AsyncIterator[bytes]:
        """Checks access before returning, so a refusal is an error status, not a cut stream."""
        ref_hash = await self._subjects.ref_hash(tenant_id, ref)
        records: list[tuple[dict[str, Any], bytes]] = []
        async with self._db.tenant_tx(tenant_id) as conn:
            subject = await self._subjects.find(conn, tenant_id, ref_hash)
            check_access(subject, access)
            hidden = sorted(readable_generations(subject, access) or ())
            for row in await conn.fetch(RECORDS.all_current, tenant_id, subject.id, hidden):
                key = await self._keyring.data_key(conn, tenant_id, row["data_key_id"])
                value = open_record(key.key, bytes(row["value_sealed"]), key.content_context())
                info = {
                    "name": row["name"],
                    "category": row["category"],
                    "version": row["version"],
                    "updated_at": _time(row["created_at"]),
                    "path": f"records/{row['name']}.json",
                }
                records.append((info, value))
        artefacts: list[Artefact] = []
        after = None
        while True:
            page = await self._artefacts.list(
                tenant_id, ref, access, category=None, after=after, limit=_PAGE
            )
            artefacts += page
            if len(page) < _PAGE:
                break
            after = (page[-1].created_at, page[-1].id)
        manifest = {
            "format": "datavault.subject-export",
            "v": 1,
            "subject_ref": ref.reveal(),
            "subject_ref_hash": ref_hash.hex(),
            "status": subject.status,
            "exported_at": _time(datetime.now(UTC)),
            "records": [info for info, _ in records],
            "artefacts": [
                {
                    "id": str(a.id),
                    "category": a.category,
                    "content_type": a.content_type,
                    "filename": a.filename,
                    "size": a.size,
                    "sha256": a.sha256,
                    "created_at": _time(a.created_at),
                    "path": _entry_name(a),
                }
                for a in artefacts
            ],
            # Holds and erasures arrive with the erasure workflow.
            "holds": [],
            "erasures": [],
        }
        return self._zip(tenant_id, ref, access, manifest, records, artefacts)

    async def _zip(
        self,
        tenant_id: uuid.UUID,
        ref: SecretText,
        access: SubjectAccess,
        manifest: dict[str, Any],
        records: list[tuple[dict[str, Any], bytes]],
        artefacts: list[Artefact],
    ) -> AsyncIterator[bytes]:
        now = datetime.now(UTC)

        async def members() -> AsyncIterator[Any]:
            body = json.dumps(manifest, indent=2, ensure_ascii=False).encode()
            yield "manifest.json", now, _ENTRY_MODE, _stored(body), _once(body)
            for info, value in records:
                yield info["path"], now, _ENTRY_MODE, _stored(value), _once(value)
            for artefact in artefacts:
                content = await self._artefacts.open_content(
                    tenant_id, ref, artefact.id, access, None
                )
                method = NO_COMPRESSION_64(artefact.size, artefact.crc32)
                yield _entry_name(artefact), artefact.created_at, _ENTRY_MODE, method, content.body

        async for chunk in async_stream_zip(members()):
            yield chunk


def _stored(data: bytes) -> Any:
    return NO_COMPRESSION_64(len(data), zlib.crc32(data))


async def _once(data: bytes) -> AsyncIterable[bytes]:
    yield data


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
