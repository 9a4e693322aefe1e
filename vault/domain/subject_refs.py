"""Subject references: the tenant's own id for a data subject."""

from __future__ import annotations

import unicodedata

from vault.domain.secret_text import SecretText
from vault.domain.text import check_text
from vault.errors import InvalidInput

# API.md, Conventions: 1 to 200 characters after NFC normalisation.
SUBJECT_REF_MAX_CHARS = 200


def normalize_ref(raw: str, field: str = "subject_ref") -> SecretText:
    """NFC-normalise and bound a reference. The error never repeats the reference.
    The text rule applies (no NUL, no lone surrogate: the reference is hashed as UTF-8
    and sealed), wherever the reference came from: path, body, query or form."""
    ref = unicodedata.normalize("NFC", check_text(raw, field))
    if not 1 <= len(ref) <= SUBJECT_REF_MAX_CHARS:
        raise InvalidInput(
            f"{field} must be 1 to {SUBJECT_REF_MAX_CHARS} characters after NFC normalisation",
            field=field,
        )
    return SecretText(ref)
