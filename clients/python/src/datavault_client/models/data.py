"""Answers about subjects, artefacts, records and playback links."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

import httpx

from datavault_client._fields import Fields
from datavault_client.errors import UnexpectedResponse
from datavault_client.secret import Secret

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: newest first (API.md), `next_cursor` None on the last."""

    items: list[T]
    next_cursor: str | None

    @classmethod
    def parse(cls, data: object, what: str, item: Callable[[Fields], T]) -> Page[T]:
        fields = Fields(data, what)
        return cls([item(f) for f in fields.objects("items")], fields.opt_text("next_cursor"))


@dataclass(frozen=True)
class CategorySummary:
    artefacts: int
    records: int
    bytes: int


@dataclass(frozen=True)
class Subject:
    """`status`: `active`, `restricted` or `erased`. `ref` is None once the vault can no
    longer decrypt it; `subject_ref_hash` (its pseudonymous HMAC) is always there."""

    ref: str | None
    subject_ref_hash: str
    status: str
    created_at: datetime | None
    restricted_at: datetime | None
    categories: dict[str, CategorySummary]

    @classmethod
    def parse(cls, f: Fields) -> Subject:
        return cls(
            ref=f.opt_text("ref"),
            subject_ref_hash=f.text("subject_ref_hash"),
            status=f.text("status"),
            created_at=f.opt_time("created_at"),
            restricted_at=f.opt_time("restricted_at"),
            categories={
                name: CategorySummary(
                    c.integer("artefacts"), c.integer("records"), c.integer("bytes")
                )
                for name, c in f.mapping("categories").items()
            },
        )


@dataclass(frozen=True)
class Artefact:
    """An artefact's metadata. `sha256` is the lower-case hex of the plaintext."""

    id: str
    subject_ref: str | None
    subject_ref_hash: str | None
    category: str
    content_type: str
    filename: str | None
    size: int
    sha256: str | None
    created_at: datetime
    expires_at: datetime | None

    @classmethod
    def parse(cls, f: Fields) -> Artefact:
        return cls(
            id=f.text("id"),
            subject_ref=f.opt_text("subject_ref"),
            subject_ref_hash=f.opt_text("subject_ref_hash"),
            category=f.text("category"),
            content_type=f.text("content_type"),
            filename=f.opt_text("filename"),
            size=f.integer("size"),
            sha256=f.opt_text("sha256"),
            created_at=f.time("created_at"),
            expires_at=f.opt_time("expires_at"),
        )


@dataclass(frozen=True)
class ContentInfo:
    """The headers of an artefact's content: what `HEAD` answers, and what a download
    starts with. `length` is this answer's byte count, `size` the whole artefact's (None
    where the answer does not say, as for an export); `range` is (first, last) of a 206."""

    status: int
    content_type: str
    length: int | None
    size: int | None
    etag: str | None
    range: tuple[int, int] | None

    @classmethod
    def of(cls, response: httpx.Response) -> ContentInfo:
        headers = response.headers
        declared = headers.get("content-length")
        length = int(declared) if declared is not None and declared.isdigit() else None
        first_last, size = _content_range(headers.get("content-range"), length)
        return cls(
            status=response.status_code,
            content_type=headers.get("content-type", "application/octet-stream"),
            length=length,
            size=size,
            etag=headers.get("etag"),
            range=first_last,
        )


def _content_range(
    value: str | None, length: int | None
) -> tuple[tuple[int, int] | None, int | None]:
    """`bytes a-b/size` → ((a, b), size); no header → (None, length)."""
    if not value or not value.startswith("bytes "):
        return None, length
    span, _, size = value.removeprefix("bytes ").partition("/")
    first, _, last = span.partition("-")
    try:
        return (int(first), int(last)), int(size)
    except ValueError:
        raise UnexpectedResponse("Content-Range is not `bytes a-b/size`") from None


@dataclass(frozen=True)
class RecordInfo:
    """A record's metadata. `created` is True when a put created it (201), False when
    it replaced an older version (200); None in a list."""

    name: str
    category: str
    version: int
    updated_at: datetime
    created: bool | None = None

    @classmethod
    def parse(cls, f: Fields, created: bool | None = None) -> RecordInfo:
        return cls(
            name=f.text("name"),
            category=f.text("category"),
            version=f.integer("version"),
            updated_at=f.time("updated_at"),
            created=created,
        )


@dataclass(frozen=True)
class KeptVersion:
    """A record version a hold kept when the record was replaced or deleted."""

    version: int
    updated_at: datetime
    superseded_at: datetime | None
    hold_ids: list[str]

    @classmethod
    def parse(cls, f: Fields) -> KeptVersion:
        return cls(
            version=f.integer("version"),
            updated_at=f.time("updated_at"),
            superseded_at=f.opt_time("superseded_at"),
            hold_ids=f.strings("hold_ids"),
        )


@dataclass(frozen=True)
class PlaybackLink:
    """A URL that serves an artefact without an Authorization header until
    `expires_at`. The URL is the credential: it is a `Secret` (masked when printed)."""

    url: Secret
    expires_at: datetime

    @classmethod
    def parse(cls, f: Fields) -> PlaybackLink:
        return cls(url=Secret(f.text("url")), expires_at=f.time("expires_at"))
