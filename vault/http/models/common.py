"""What every part of the API shares: times, paging, problems."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from msgspec import UNSET, Meta, Struct, UnsetType

# Answers carry times as RFC 3339 strings in UTC ending in Z (docs/api.md, Conventions);
# tz=True makes the schema say date-time (msgspec leaves a time without it a plain string).
Time = Annotated[datetime, Meta(tz=True)]
# A time a client sends: RFC 3339 with an offset (Z or +hh:mm).
AwareTime = Annotated[
    datetime, Meta(tz=True, description="RFC 3339 date-time with an offset (Z for UTC)")
]

# API.md, Conventions: lists take `limit` (default 50, max 500) and `cursor`.
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
Limit = Annotated[int, Meta(ge=1, le=MAX_LIMIT, description=f"Rows ({DEFAULT_LIMIT})")]
Cursor = Annotated[str, Meta(description="next_cursor of the previous page")]
NextCursor = Annotated[
    str | None, Meta(description="Pass as cursor for the next page; null on the last")
]
# Free text a client names something with (reasons, references): 1 character at least.
SubjectRefText = Annotated[
    str,
    Meta(
        description="The tenant's own id for a data subject, 1 to 200 characters after NFC "
        "normalisation (the vault matches its keyed hash)"
    ),
]


class PageQuery(Struct, forbid_unknown_fields=True, kw_only=True):
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None


class FieldError(Struct):
    field: str
    message: str


class Problem(Struct, kw_only=True):
    """RFC 9457 problem details. Validation errors list the fields in `errors`; a
    refusal because of legal holds names them in `holds`."""

    type: str
    title: str
    status: int
    detail: str
    request_id: str | None
    errors: list[FieldError] | UnsetType = UNSET
    holds: list[str] | UnsetType = UNSET
