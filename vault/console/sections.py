"""The console's sections and the scopes each needs: the same as the API behind it.

Written once: the pages ask `signed_in` for these scopes, and the navigation shows a
section only to a key holding one of them, so no link leads to a 403 page.
"""

from __future__ import annotations

from dataclasses import dataclass

from vault.domain.scopes import Scope, allows

HOLDS = (Scope.COMPLIANCE,)
ERASURES = (Scope.ERASURE, Scope.COMPLIANCE)
# Subject lookup and export read data; compliance includes read.
SUBJECTS = (Scope.READ,)
ACCESS_LOG = (Scope.COMPLIANCE,)
# Disclosures are recorded beside holds and listed on subject pages: compliance only.
DISCLOSURES = (Scope.COMPLIANCE,)


@dataclass(frozen=True)
class Section:
    path: str
    label: str  # catalogue key
    scopes: tuple[Scope, ...]  # any one of them opens it; () for every signed-in key


SECTIONS = (
    Section("/console", "nav.dashboard", ()),
    Section("/console/holds", "nav.holds", HOLDS),
    Section("/console/erasures", "nav.erasures", ERASURES),
    Section("/console/subjects", "nav.subjects", SUBJECTS),
    Section("/console/access-log", "nav.access_log", ACCESS_LOG),
)


def may_open(held: frozenset[Scope], scopes: tuple[Scope, ...]) -> bool:
    return not scopes or any(allows(held, scope) for scope in scopes)


def sections_for(held: frozenset[Scope]) -> list[Section]:
    """The sections a key with scopes `held` may open, in navigation order."""
    return [section for section in SECTIONS if may_open(held, section.scopes)]
