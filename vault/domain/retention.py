"""Retention per category: `delete_after_days` (data is shredded when that old) and
`keep_at_least_days` (statutory retention: an erasure keeps the category until then,
readable only by compliance). Defaults from the policies this vault is built for."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
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


@dataclass(frozen=True)
class PendingKeep:
    """A shortened or removed `keep_at_least_days` that does not bind data written before
    `changed_at` until `effective_at` (DESIGN.md: nothing kept is destroyed by one hand in
    one step; the deployment's closure delay applies). Until then that data is kept as
    `previous_days` said."""

    category: str
    keep_at_least_days: int | None
    previous_days: int
    changed_at: datetime
    effective_at: datetime

    def to_document(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "keep_at_least_days": self.keep_at_least_days,
            "previous_keep_at_least_days": self.previous_days,
            "changed_at": self.changed_at.isoformat(),
            "effective_at": self.effective_at.isoformat(),
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> PendingKeep:
        return cls(
            document["category"],
            document.get("keep_at_least_days"),
            int(document["previous_keep_at_least_days"]),
            datetime.fromisoformat(document["changed_at"]),
            datetime.fromisoformat(document["effective_at"]),
        )


def kept_until(
    rules: CategoryRetention, pending: Iterable[PendingKeep], written_at: datetime
) -> datetime | None:
    """Until when statutory retention keeps data of a category written at `written_at`
    (None: it does not). The one statement of the rule: the erasure executor, the
    retention job and `datavault check deletion` all ask it.

    The current `keep_at_least_days` binds every item; a pending shortening also keeps
    data written before it, as the previous value said, until the change takes effect."""
    ends = []
    if rules.keep_at_least_days:
        ends.append(written_at + timedelta(days=rules.keep_at_least_days))
    for change in pending:
        if written_at < change.changed_at:
            ends.append(min(change.effective_at, written_at + timedelta(days=change.previous_days)))
    return max(ends, default=None)


def may_keep(rules: CategoryRetention, pending: Iterable[PendingKeep]) -> bool:
    """Whether `kept_until` can keep anything of a category with these rules and pending
    changes, whenever it was written: callers skip finding out when its newest data was
    written where nothing could be kept anyway."""
    return bool(rules.keep_at_least_days) or any(True for _ in pending)


def pending_after_change(
    category: str,
    old: CategoryRetention,
    new: CategoryRetention,
    pending: Iterable[PendingKeep],
    now: datetime,
    delay: timedelta,
) -> list[PendingKeep]:
    """The category's pending shortenings after its rules change from `old` to `new`.

    Shortening or removing `keep_at_least_days` adds one that takes effect after `delay`;
    lengthening applies at once. A pending change stops mattering once it has taken effect
    or once the current value keeps data at least as long as it did (so setting the old
    value back cancels it)."""
    changes = list(pending)
    shortened = old.keep_at_least_days is not None and (
        new.keep_at_least_days is None or new.keep_at_least_days < old.keep_at_least_days
    )
    if shortened:
        assert old.keep_at_least_days is not None
        changes.append(
            PendingKeep(category, new.keep_at_least_days, old.keep_at_least_days, now, now + delay)
        )
    return [
        change
        for change in changes
        if change.effective_at > now
        and (new.keep_at_least_days is None or change.previous_days > new.keep_at_least_days)
    ]


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
