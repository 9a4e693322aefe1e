"""API-key format, generation and the bar a tenant's own secret must clear."""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass

from vault.domain.holds import person
from vault.domain.scopes import Scope
from vault.domain.secret_strength import estimate_entropy_bits
from vault.domain.secret_text import SecretText
from vault.errors import InvalidInput

# dv_<prefix>_<secret>: the prefix is public (it names the key in logs and lists), the
# secret carries the strength: 32 random bytes = 256 bits, 43 base64url characters.
PREFIX_LENGTH = 12  # base32 characters, 60 bits: collisions are checked by a unique index
SECRET_BYTES = 32
_GENERATED = re.compile(r"^dv_([a-z2-7]{12})_([A-Za-z0-9_-]{43})$")
_PRESENTED_PREFIX = re.compile(r"^dv_([a-z2-7]{12})_")

# A tenant's own secret (bring your own key): long enough and estimated ≥ 128 bits.
OWN_SECRET_MIN_LENGTH = 32
OWN_SECRET_MAX_LENGTH = 256  # bounds the hashing work an attacker can ask for
OWN_SECRET_MIN_BITS = 128
# Bearer tokens travel in a header: visible ASCII only, no spaces.
_TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+$")
# A tenant may register this many own secrets per hour (counted in the database, so
# across all API replicas): legitimate use is a handful, and each registration is a
# chance to present a guess of another key (vault/services/api_keys.py, create_in).
OWN_SECRETS_PER_HOUR = 20
OWN_SECRETS_WINDOW_SECONDS = 3600

KEY_NAME_MAX_LENGTH = 200


@dataclass(frozen=True)
class NewKeyMaterial:
    prefix: str
    secret: SecretText  # the whole presented token
    bring_your_own: bool


def new_prefix() -> str:
    return base64.b32encode(secrets.token_bytes(10)).decode().lower()[:PREFIX_LENGTH]


def generate_key() -> NewKeyMaterial:
    prefix = new_prefix()
    token = f"dv_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    assert _GENERATED.match(token)
    return NewKeyMaterial(prefix, SecretText(token), bring_your_own=False)


def own_key(secret: str) -> NewKeyMaterial:
    check_own_secret(secret)
    return NewKeyMaterial(new_prefix(), SecretText(secret), bring_your_own=True)


def token_shaped(token: str) -> bool:
    """Could this be a key the vault issued or accepted? (Anything else fails at once.)"""
    return bool(token) and len(token) <= OWN_SECRET_MAX_LENGTH and bool(_TOKEN_CHARS.match(token))


def presented_prefix(token: str) -> str | None:
    """The public prefix of a presented token shaped as the vault issues them in full,
    for logging a failed attempt. Only that shape: a tenant's own secret that merely
    starts like one would have part of its secret logged."""
    match = _GENERATED.match(token)
    return match[1] if match else None


def check_own_secret(secret: str) -> None:
    # Messages name the rule that failed, never the secret.
    if len(secret) < OWN_SECRET_MIN_LENGTH:
        raise InvalidInput(
            f"secret must be at least {OWN_SECRET_MIN_LENGTH} characters", field="secret"
        )
    if len(secret) > OWN_SECRET_MAX_LENGTH:
        raise InvalidInput(
            f"secret must be at most {OWN_SECRET_MAX_LENGTH} characters", field="secret"
        )
    if not _TOKEN_CHARS.match(secret):
        raise InvalidInput("secret must be printable ASCII without spaces", field="secret")
    if _PRESENTED_PREFIX.match(secret):
        # Its first characters would read as a public key prefix, in logs and to people.
        raise InvalidInput(
            "secret must not start like a key the vault issues (dv_<12 characters>_)",
            field="secret",
        )
    if estimate_entropy_bits(secret) < OWN_SECRET_MIN_BITS:
        raise InvalidInput(
            f"secret is too guessable: estimated below {OWN_SECRET_MIN_BITS} bits; "
            "use at least 43 random base64 characters",
            field="secret",
        )


# DESIGN.md: keys that can end a hold or mint keys name the person who holds them.
OWNER_REQUIRED = frozenset({Scope.COMPLIANCE, Scope.ADMIN})
OWNER_MAX_LENGTH = 200
# Who holds a tenant's first admin key unless the operator names someone.
FIRST_KEY_OWNER = "operator"


def check_owner(owner: str | None, scopes: frozenset[Scope]) -> str | None:
    """The key's owner: required for compliance and admin keys, 1-200 characters."""
    if owner is None:
        if scopes & OWNER_REQUIRED:
            raise InvalidInput(
                "owner (the person who holds the key) is required for compliance and admin keys",
                field="owner",
            )
        return None
    # person(): what the two-person rule compares; an owner of invisible characters
    # only would name nobody a reader of the journal can see (red team 22).
    if not person(owner) or len(owner) > OWNER_MAX_LENGTH:
        raise InvalidInput(
            f"owner must be 1-{OWNER_MAX_LENGTH} characters, some of them visible",
            field="owner",
        )
    return owner
