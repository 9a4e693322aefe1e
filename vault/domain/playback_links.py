"""Playback links (API.md "Playback links"): their lifetime and the shape of their token.

A link is a URL that serves one artefact's content without an Authorization header, to a
browser's `<video>` or a download link. The token in it is the credential, so it is as
strong as an API key's secret and is never stored, only its hash.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Final

from vault.domain.secret_text import SecretText
from vault.errors import InvalidInput

# API.md: `expires_in` in seconds, default 900, at most 3,600. A link outliving an hour
# would be a standing credential in a browser's history; one second is the least that
# is a lifetime at all.
DEFAULT_LIFETIME_SECONDS: Final = 900
MAX_LIFETIME_SECONDS: Final = 3600
MIN_LIFETIME_SECONDS: Final = 1

# 256 random bits, like API keys and console sessions: unguessable, so a link needs no
# other secret beside it. The prefix tells a leaked one apart from an API key in a scan.
TOKEN_PREFIX: Final = "dvp_"  # noqa: S105 - a marker, not a secret
TOKEN_BYTES: Final = 32
TOKEN_PATTERN: Final = re.compile(r"dvp_[A-Za-z0-9_-]{43}")

LINK_FIELDS: Final = frozenset({"expires_in"})


def new_token() -> SecretText:
    return SecretText(TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES))


def token_shaped(token: str) -> bool:
    """Whether `token` could be one the vault minted; anything else is not looked up."""
    return TOKEN_PATTERN.fullmatch(token) is not None


def link_lifetime(body: dict[str, Any]) -> int:
    """The seconds a new link lives, from the minting request's body (422 otherwise)."""
    unknown = set(body) - LINK_FIELDS
    if unknown:
        first, *rest = sorted(unknown)
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}", field=first, also=rest)
    value = body.get("expires_in")
    if value is None:
        return DEFAULT_LIFETIME_SECONDS
    # bool is an int in Python, and JSON's true is not a number of seconds.
    if type(value) is not int or not MIN_LIFETIME_SECONDS <= value <= MAX_LIFETIME_SECONDS:
        raise InvalidInput(
            f"expires_in must be a whole number of seconds from {MIN_LIFETIME_SECONDS} to "
            f"{MAX_LIFETIME_SECONDS}",
            field="expires_in",
        )
    return value
