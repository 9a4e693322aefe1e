"""Data categories: the built-in ones and a tenant's own (API.md, Conventions)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from vault.errors import InvalidInput

BUILT_IN_CATEGORIES = ("recording", "transcript", "account", "billing", "support")
# Holds the sealed copy of the subject reference; not a category tenants store data in.
IDENTITY_CATEGORY = "identity"
CATEGORY_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def known_categories(tenant_categories: Iterable[str] = ()) -> tuple[str, ...]:
    """The built-in categories followed by a tenant's own."""
    return (*BUILT_IN_CATEGORIES, *tenant_categories)


def check_category(value: str | None, tenant_categories: Iterable[str] = ()) -> str:
    if not value:
        raise InvalidInput("category is required", field="category")
    known = known_categories(tenant_categories)
    if value not in known:
        raise InvalidInput(f"unknown category; known: {', '.join(sorted(known))}", field="category")
    return value


def check_category_list(value: object, known: Iterable[str]) -> tuple[str, ...] | None:
    """A list of categories a hold or a disclosure names: non-empty, each one of `known`
    (`known_categories` of the tenant) or `identity` (the subject reference itself),
    repeats dropped; None when it is not such a list."""
    allowed = {*known, IDENTITY_CATEGORY}
    if (
        not isinstance(value, list)
        or not value
        or any(not isinstance(c, str) or c not in allowed for c in value)
    ):
        return None
    return tuple(dict.fromkeys(value))
