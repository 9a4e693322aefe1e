"""One error tree for the whole vault. No HTTP here: http/problems.py maps each to a status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class VaultError(Exception):
    """Base of every error the vault raises on purpose. `detail` is safe to show a client."""

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra: Mapping[str, Any] = extra


class InvalidInput(VaultError):
    """The request is well-formed but a value is wrong (a field, a query parameter).

    `field` names the offending field or parameter; problem+json lists it in `errors`."""

    def __init__(self, detail: str, *, field: str, also: Sequence[str] = ()) -> None:
        fields = [field, *also]
        super().__init__(detail, errors=[{"field": name, "message": detail} for name in fields])
        self.field = field

    @classmethod
    def of_fields(cls, messages: Mapping[str, str]) -> InvalidInput:
        """Several fields wrong at once, each with its own message; the first is `detail`."""
        (field, detail), *_ = messages.items()
        error = cls(detail, field=field)
        error.extra = {"errors": [{"field": f, "message": m} for f, m in messages.items()]}
        return error


class MalformedInput(VaultError):
    """The request body cannot be parsed at all."""


class NotFound(VaultError):
    """Missing, or belongs to another tenant: the two look the same on purpose."""


class KeyDestroyed(NotFound):
    """The key that would open this data was destroyed (crypto-shredded)."""


class Conflict(VaultError):
    """The request clashes with the current state (a hold, an existing value)."""


class TenantClosed(Conflict):
    """The tenant is closed: its closure destroyed its keys, and it gets no new ones."""


class SubjectChanged(Conflict):
    """The subject changed between reading it and writing a key under it: an erasure was
    requested (a new generation: migration 0016) or its keys were rewrapped for a new
    epoch (migration 0018). The database refuses the key; writers read the subject again,
    and if it still escapes, the client may retry."""


class TimedOut(VaultError):
    """The client stopped sending the request body."""


class TooLarge(VaultError):
    """A body or value is over its limit."""


class UnsupportedMediaType(VaultError):
    """The Content-Type is not one this endpoint accepts."""


class Unauthenticated(VaultError):
    """No credentials, or credentials that do not identify a live API key."""


class KeyNoLongerLive(Unauthenticated):
    """A key recognised from memory was found revoked (or its tenant closed) by the
    request's own statement; nothing was read or written."""


class Forbidden(VaultError):
    """The key is valid but may not do this (scope, allowed CIDRs)."""


class Restricted(Forbidden):
    """Processing of this subject is restricted (GDPR Art. 18): compliance scope only."""


class RestrictedDeletion(Conflict):
    """Processing of this subject is restricted (GDPR Art. 18), which freezes deletion
    too: the application may not delete its data until the restriction is lifted (an
    erasure instruction still proceeds)."""


class Gone(NotFound):
    """Existed, and the vault still knows it was deleted or erased."""


class Throttled(VaultError):
    """Too many attempts; retry after `retry_after` seconds."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after


class Unavailable(VaultError):
    """A dependency (database, blob store, key provider, access log) cannot be reached."""

    def __init__(self, detail: str, retry_after: int = 5) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after


class BlobMissing(VaultError):
    """A live artefact's blob is not in the store, which answered: the data is lost (or
    was removed behind the vault), not the store down, so no retry will bring it back."""

    def __init__(self) -> None:
        super().__init__("the artefact's stored data is missing")


class UnknownTenant(VaultError):
    """An operator command named a tenant that does not exist."""


class UnknownEpoch(VaultError):
    """An operator command named a root key epoch that does not exist."""
