"""Subjects (summary, export, restriction) and records (small JSON values)."""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterator
from typing import Any, BinaryIO

from datavault_client import _routes as R
from datavault_client._fields import Fields
from datavault_client._streams import ContentStream
from datavault_client._transport import JsonBody, Transport, json_of
from datavault_client.artefacts import Download
from datavault_client.errors import ConnectionFailed
from datavault_client.models import ContentInfo, KeptVersion, Page, RecordInfo, Subject
from datavault_client.retry import NO_RETRIES


class Subjects:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def get(self, ref: str) -> Subject:
        """Status (`active`, `restricted`, `erased`) and what is stored, by category."""
        response = self._t.call(R.GET_SUBJECT, {"ref": ref})
        return Subject.parse(Fields(json_of(response, R.GET_SUBJECT), "subject"))

    def export(self, ref: str) -> Download:
        """Everything readable about the subject as one zip (`manifest.json` and every
        artefact's plaintext), streamed: `.save(path)` it or iterate its chunks. An export
        is built as it is sent, so a broken one is not resumed: ask again."""
        response = self._t.call(
            R.EXPORT_SUBJECT, {"ref": ref}, headers={"Accept": "application/zip"}, stream=True
        )

        def no_resume(offset: int) -> Any:
            raise ConnectionFailed(f"{R.EXPORT_SUBJECT}: the export broke off; ask again")

        stream = ContentStream(response, no_resume, NO_RETRIES, str(R.EXPORT_SUBJECT),
                               self._t.sleep)  # fmt: skip
        return Download(ContentInfo.of(response), stream)

    def export_to(self, ref: str, target: str | os.PathLike[str] | BinaryIO) -> int:
        with self.export(ref) as download:
            return download.save(target)

    def restrict(self, ref: str, reason: str) -> Subject:
        """Restrict processing (GDPR Art. 18): only the compliance scope reads the
        subject's data from now on, nothing new is written, deletes answer 409."""
        response = self._t.call(R.RESTRICT_SUBJECT, {"ref": ref}, body=JsonBody({"reason": reason}))
        return Subject.parse(Fields(json_of(response, R.RESTRICT_SUBJECT), "subject"))

    def lift_restriction(self, ref: str) -> Subject:
        response = self._t.call(R.LIFT_RESTRICTION, {"ref": ref})
        return Subject.parse(Fields(json_of(response, R.LIFT_RESTRICTION), "subject"))


class Records:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def put(
        self, ref: str, name: str, value: Any, *, category: str | None = None,
        idempotency_key: str | None = None,
    ) -> RecordInfo:  # fmt: skip
        """Create or replace record `name` with a JSON value (at most 1 MiB). `category`
        is required when it is created. Replacing shreds the previous version unless a
        hold keeps it. `.created` says which it was."""
        response = self._t.call(
            R.PUT_RECORD, {"ref": ref, "name": name}, params={"category": category},
            body=JsonBody(value), idempotency_key=idempotency_key,
        )  # fmt: skip
        fields = Fields(json_of(response, R.PUT_RECORD), "record")
        return RecordInfo.parse(fields, created=response.status_code == 201)

    def get(self, ref: str, name: str) -> Any:
        """The record's JSON value as stored."""
        return json_of(self._t.call(R.GET_RECORD, {"ref": ref, "name": name}), R.GET_RECORD)

    def list(
        self, ref: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[RecordInfo]:
        response = self._t.call(
            R.LIST_RECORDS, {"ref": ref}, params={"limit": limit, "cursor": cursor}
        )
        return Page.parse(json_of(response, R.LIST_RECORDS), "records", RecordInfo.parse)

    def iterate(self, ref: str) -> Iterator[RecordInfo]:
        cursor = None
        while True:
            page = self.list(ref, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def delete(self, ref: str, name: str) -> None:
        """Shred the record. Under hold: `Conflict` with `.holds`."""
        self._t.call(R.DELETE_RECORD, {"ref": ref, "name": name})

    def versions(self, ref: str, name: str) -> builtins.list[KeptVersion]:
        """Versions a hold kept when the record was replaced or deleted (compliance)."""
        response = self._t.call(R.LIST_RECORD_VERSIONS, {"ref": ref, "name": name})
        page = Page.parse(json_of(response, R.LIST_RECORD_VERSIONS), "versions",
                          KeptVersion.parse)  # fmt: skip
        return page.items

    def version(self, ref: str, name: str, version: int) -> Any:
        """The JSON value of a kept version (compliance)."""
        path = {"ref": ref, "name": name, "version": str(version)}
        return json_of(self._t.call(R.GET_RECORD_VERSION, path), R.GET_RECORD_VERSION)
