"""API-key scopes and what each lets a key do."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from vault.errors import InvalidInput


class Scope(StrEnum):
    INGEST = "ingest"
    READ = "read"
    ERASURE = "erasure"
    COMPLIANCE = "compliance"
    ADMIN = "admin"


# compliance also reads everything read may (API.md, Authentication).
_IMPLIED: dict[Scope, frozenset[Scope]] = {Scope.READ: frozenset({Scope.COMPLIANCE})}


def parse_scopes(values: Iterable[object]) -> frozenset[Scope]:
    scopes = set()
    for value in values:
        try:
            scopes.add(Scope(str(value)))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise InvalidInput(
                f"unknown scope {value!r}; known scopes: {known}", field="scopes"
            ) from None
    if not scopes:
        raise InvalidInput("a key needs at least one scope", field="scopes")
    return frozenset(scopes)


def allows(held: frozenset[Scope], required: Scope) -> bool:
    return required in held or bool(held & _IMPLIED.get(required, frozenset()))
