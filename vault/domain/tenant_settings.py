"""A tenant's settings: its own data categories and per-category artefact size limits.

Stored as one JSON document on the tenant row; fields a PATCH leaves out stay as they
were.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from vault.domain.categories import (
    BUILT_IN_CATEGORIES,
    CATEGORY_PATTERN,
    IDENTITY_CATEGORY,
    known_categories,
)
from vault.domain.retention import (
    DEFAULT_RETENTION,
    CategoryRetention,
    PendingKeep,
    kept_until,
    may_keep,
    parse_retention,
    pending_after_change,
    retention_from_document,
)
from vault.errors import InvalidInput

MAX_TENANT_CATEGORIES = 50
# DESIGN.md: the grace period before an erasure runs is at most 29 days.
MAX_ERASURE_GRACE_HOURS = 29 * 24
DEFAULT_ERASURE_RATE_LIMIT_PER_HOUR = 1000
_FIELDS = (
    "categories",
    "max_artefact_bytes",
    "erasure_grace_hours",
    "erasure_rate_limit_per_hour",
    "retention",
)


@dataclass(frozen=True)
class TenantSettings:
    categories: tuple[str, ...] = ()
    max_artefact_bytes: Mapping[str, int] = field(default_factory=dict)
    erasure_grace_hours: int = 0
    # None: no brake on the erasure rate.
    erasure_rate_limit_per_hour: int | None = DEFAULT_ERASURE_RATE_LIMIT_PER_HOUR
    retention: Mapping[str, CategoryRetention] = field(
        default_factory=lambda: dict(DEFAULT_RETENTION)
    )
    # Shortened statutory retention not yet binding data written before the change.
    pending: tuple[PendingKeep, ...] = ()

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> TenantSettings:
        return cls(
            categories=tuple(document.get("categories", ())),
            max_artefact_bytes=dict(document.get("max_artefact_bytes", {})),
            erasure_grace_hours=int(document.get("erasure_grace_hours", 0)),
            erasure_rate_limit_per_hour=document.get(
                "erasure_rate_limit_per_hour", DEFAULT_ERASURE_RATE_LIMIT_PER_HOUR
            ),
            retention=retention_from_document(document.get("retention", {})),
            pending=tuple(PendingKeep.from_document(p) for p in document.get("pending", ())),
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "categories": list(self.categories),
            "max_artefact_bytes": dict(self.max_artefact_bytes),
            "erasure_grace_hours": self.erasure_grace_hours,
            "erasure_rate_limit_per_hour": self.erasure_rate_limit_per_hour,
            "retention": {c: r.to_document() for c, r in sorted(self.retention.items())},
            "pending": [p.to_document() for p in self.pending],
        }

    def rules_for(self, category: str) -> CategoryRetention:
        return self.retention.get(category, CategoryRetention())

    def kept_until(self, category: str, written_at: datetime) -> datetime | None:
        """Until when statutory retention keeps this category's data written then."""
        return kept_until(
            self.rules_for(category),
            (p for p in self.pending if p.category == category),
            written_at,
        )

    def may_keep(self, category: str) -> bool:
        """Whether statutory retention can keep anything of this category (see
        `kept_until`), whatever its data's age."""
        return may_keep(
            self.rules_for(category), (p for p in self.pending if p.category == category)
        )

    def categories_retention_may_keep(self) -> list[str]:
        """Every category `may_keep` is true of (the others have no rules keeping them and
        nothing pending): the executor finds the newest data only of these."""
        named = set(self.retention) | {p.category for p in self.pending}
        return sorted(category for category in named if self.may_keep(category))

    def as_of(self, now: datetime) -> TenantSettings:
        """Without pending changes that have taken effect by `now` (they keep nothing)."""
        return replace(self, pending=tuple(p for p in self.pending if p.effective_at > now))

    def artefact_limit(self, category: str, deployment_max: int) -> int:
        return min(deployment_max, self.max_artefact_bytes.get(category, deployment_max))

    def apply(
        self, patch: Mapping[str, Any], deployment_max: int, now: datetime, delay: timedelta
    ) -> TenantSettings:
        """The settings after a PATCH: fields left out stay as they were. A shortened
        `keep_at_least_days` binds data written before `now` only after `delay` (the
        deployment's closure delay)."""
        unknown = set(patch) - set(_FIELDS)
        if unknown:
            first, *rest = sorted(unknown)
            raise InvalidInput(
                f"unknown settings: {', '.join(sorted(unknown))}", field=first, also=rest
            )
        categories = self.categories
        if "categories" in patch:
            categories = _categories(patch["categories"])
        limits = dict(self.max_artefact_bytes)
        if "max_artefact_bytes" in patch:
            limits = _limits(
                patch["max_artefact_bytes"],
                limits,
                known_categories(categories),
                deployment_max,
            )
        kept = {c: n for c, n in limits.items() if c in known_categories(categories)}
        grace = self.erasure_grace_hours
        if "erasure_grace_hours" in patch:
            grace = patch["erasure_grace_hours"]
            if type(grace) is not int or not 0 <= grace <= MAX_ERASURE_GRACE_HOURS:
                raise InvalidInput(
                    f"erasure_grace_hours must be an integer from 0 to {MAX_ERASURE_GRACE_HOURS}",
                    field="erasure_grace_hours",
                )
        rate = self.erasure_rate_limit_per_hour
        if "erasure_rate_limit_per_hour" in patch:
            rate = patch["erasure_rate_limit_per_hour"]
            if rate is not None and (type(rate) is not int or rate < 1):
                raise InvalidInput(
                    "erasure_rate_limit_per_hour must be an integer >= 1, or null for no brake",
                    field="erasure_rate_limit_per_hour",
                )
        retention = dict(self.retention)
        if "retention" in patch:
            retention = parse_retention(patch["retention"], retention, known_categories(categories))
        pending: list[PendingKeep] = []
        for category in sorted({*retention, *(p.category for p in self.pending)}):
            pending += pending_after_change(
                category,
                self.rules_for(category),
                retention.get(category, CategoryRetention()),
                (p for p in self.pending if p.category == category),
                now,
                delay,
            )
        return TenantSettings(categories, kept, grace, rate, retention, tuple(pending))


def _categories(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_TENANT_CATEGORIES:
        raise InvalidInput(
            f"categories must be a list of at most {MAX_TENANT_CATEGORIES}", field="categories"
        )
    for item in value:
        if not isinstance(item, str) or not CATEGORY_PATTERN.match(item):
            raise InvalidInput(
                "a category is a lower-case slug: [a-z][a-z0-9_-]{0,62}", field="categories"
            )
        if item in BUILT_IN_CATEGORIES or item == IDENTITY_CATEGORY:
            raise InvalidInput(f"{item!r} is built in or reserved", field="categories")
    return tuple(dict.fromkeys(value))


def _limits(
    value: Any, current: dict[str, int], known: tuple[str, ...], deployment_max: int
) -> dict[str, int]:
    if not isinstance(value, dict):
        raise InvalidInput(
            "max_artefact_bytes maps a category to bytes (or null)", field="max_artefact_bytes"
        )
    for category, limit in value.items():
        if category not in known:
            raise InvalidInput(f"unknown category {category!r}", field="max_artefact_bytes")
        if limit is None:
            current.pop(category, None)
            continue
        if type(limit) is not int or not 1 <= limit <= deployment_max:
            raise InvalidInput(
                f"a limit is an integer from 1 to the deployment's {deployment_max}",
                field="max_artefact_bytes",
            )
        current[category] = limit
    return current
