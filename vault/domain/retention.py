"""Retention per category: `delete_after_days` (data is shredded when that old) and
`keep_at_least_days` (statutory retention: an erasure keeps the category until then,
readable only by compliance). Defaults from the policies this vault is built for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vault.errors import InvalidInput

# 100 years: beyond any statutory period, and far inside timestamp range.
MAX_RETENTION_DAYS = 36_500
SEVEN_YEARS = 7 * 365 + 2  # two leap days in any seven-year span, conservatively


@dataclass(frozen=True)
class CategoryRetention:
    delete_after_days: int | None = None
    keep_at_least_days: int | None = None

    def to_document(self) -> dict[str, int | None]:
        return {
            "delete_after_days": self.delete_after_days,
            "keep_at_least_days": self.keep_at_least_days,
        }


DEFAULT_RETENTION: Mapping[str, CategoryRetention] = {
    "recording": CategoryRetention(delete_after_days=90),
    "transcript": CategoryRetention(delete_after_days=90),
    "support": CategoryRetention(delete_after_days=3 * 365 + 1),
    "account": CategoryRetention(),  # kept until erasure or closure
    "billing": CategoryRetention(delete_after_days=SEVEN_YEARS, keep_at_least_days=SEVEN_YEARS),
}


def parse_retention(
    value: Any, current: Mapping[str, CategoryRetention], known: tuple[str, ...]
) -> dict[str, CategoryRetention]:
    if not isinstance(value, dict):
        raise InvalidInput("retention maps a category to its rules", field="retention")
    merged = dict(current)
    for category, rules in value.items():
        if category not in known:
            raise InvalidInput(f"unknown category {category!r}", field="retention")
        if not isinstance(rules, dict) or set(rules) - {"delete_after_days", "keep_at_least_days"}:
            raise InvalidInput(
                "each category takes delete_after_days and keep_at_least_days", field="retention"
            )
        old = merged.get(category, CategoryRetention())
        days = {
            name: rules.get(name, getattr(old, name))
            for name in ("delete_after_days", "keep_at_least_days")
        }
        for name, number in days.items():
            if number is not None and (
                type(number) is not int or not 1 <= number <= MAX_RETENTION_DAYS
            ):
                raise InvalidInput(
                    f"{name} must be 1-{MAX_RETENTION_DAYS} days or null", field="retention"
                )
        delete, keep = days["delete_after_days"], days["keep_at_least_days"]
        if delete is not None and keep is not None and delete < keep:
            raise InvalidInput(
                f"{category}: delete_after_days cannot be shorter than keep_at_least_days",
                field="retention",
            )
        merged[category] = CategoryRetention(delete, keep)
    return merged


def retention_from_document(document: Mapping[str, Any]) -> dict[str, CategoryRetention]:
    rules = dict(DEFAULT_RETENTION)
    for category, values in document.items():
        rules[category] = CategoryRetention(
            values.get("delete_after_days"), values.get("keep_at_least_days")
        )
    return rules
