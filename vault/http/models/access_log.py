"""The access log (compliance scope)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any

from msgspec import Meta, Struct

from vault.http.models.common import (
    DEFAULT_LIMIT,
    AwareTime,
    Limit,
    NextCursor,
    SubjectRefText,
    Time,
)


class AccessLogFilters(Struct, forbid_unknown_fields=True, kw_only=True):
    """What the API and the console both search by."""

    api_key_id: Annotated[uuid.UUID, Meta(description="Only this key's requests")] | None = None
    ip: Annotated[str, Meta(description="One address or a CIDR")] | None = None
    status: Annotated[int, Meta(ge=100, le=599, description="HTTP status")] | None = None
    since: Annotated[AwareTime, Meta(description="At or after")] | None = None
    until: Annotated[AwareTime, Meta(description="Before")] | None = None
    cursor: Annotated[str, Meta(description="next_cursor of the previous page")] | None = None


class AccessLogQuery(AccessLogFilters, forbid_unknown_fields=True, kw_only=True):
    limit: Limit = DEFAULT_LIMIT
    subject_ref: (
        Annotated[SubjectRefText, Meta(description="Only requests about this subject")] | None
    ) = None


class AccessRow(Struct):
    at: Time
    api_key_id: uuid.UUID | None
    key_prefix: str | None
    ip: Annotated[str | None, Meta(description="After retention: a /24 or /48 network")]
    method: str
    route: Annotated[str, Meta(description="The route template")]
    status: int
    subject_ref_hash: str | None
    artefact_id: uuid.UUID | None
    bytes: int
    bytes_in: int
    bytes_out: int
    request_id: str | None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> AccessRow:
        ip = row["ip"]
        if ip is not None and row["ip_masklen"] not in (32, 128):
            ip = f"{ip}/{row['ip_masklen']}"  # truncated by retention
        ref_hash = row["subject_ref_hash"]
        return cls(
            row["at"], row["api_key_id"], row["key_prefix"],
            None if ip is None else str(ip), row["method"], row["route"], row["status"],
            None if ref_hash is None else bytes(ref_hash).hex(), row["artefact_id"],
            row["bytes_in"] + row["bytes_out"], row["bytes_in"], row["bytes_out"],
            row["request_id"],
        )  # fmt: skip


class AccessLogPage(Struct):
    items: list[AccessRow]
    next_cursor: NextCursor
