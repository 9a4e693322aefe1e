"""Subject references: the tenant's own id for a data subject."""

from __future__ import annotations

import unicodedata

from vault.domain.secret_text import SecretText
from vault.domain.text import check_text
from vault.errors import InvalidInput

# API.md, Conventions: 1 to 200 characters after NFC normalisation.
SUBJECT_REF_MAX_CHARS = 200


class SubjectRef(SecretText):
    """A subject reference as the vault keys it: only `normalize_ref` makes one, and the
    keyed hash takes nothing else, so every path (API, console, access-log search) finds
    the same pseudonym for the same reference."""

    __slots__ = ()


def normalize_ref(raw: str, field: str = "subject_ref") -> SubjectRef:
    """NFC-normalise and bound a reference; nothing else (no trimming: `"zed "` and
    `"zed"` are two references, as the tenant wrote them). The error never repeats the
    reference.
    The text rule applies (no NUL, no lone surrogate: the reference is hashed as UTF-8
    and sealed), wherever the reference came from: path, body, query or form."""
    ref = unicodedata.normalize("NFC", check_text(raw, field))
    if not 1 <= len(ref) <= SUBJECT_REF_MAX_CHARS:
        raise InvalidInput(
            f"{field} must be 1 to {SUBJECT_REF_MAX_CHARS} characters after NFC normalisation",
            field=field,
        )
    return SubjectRef(ref)
