"""Which categories statutory retention may keep: the executor finds a category's newest
data only for these (erasures.sql shred_inputs), so none that `may_keep` is true of may be
missing from the list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vault.domain.retention import DEFAULT_RETENTION, CategoryRetention, PendingKeep
from vault.domain.tenant_settings import TenantSettings


def test_defaults_name_only_billing() -> None:
    settings = TenantSettings()
    assert settings.categories_retention_may_keep() == ["billing"]
    assert all(
        settings.may_keep(category) == (category == "billing") for category in DEFAULT_RETENTION
    )


def test_a_category_of_the_tenants_own_and_a_pending_shortening_are_named() -> None:
    now = datetime(2026, 12, 6, tzinfo=UTC)
    settings = TenantSettings(
        categories=("contracts", "notes"),
        retention={
            "contracts": CategoryRetention(keep_at_least_days=30),
            "notes": CategoryRetention(delete_after_days=10),
            "billing": CategoryRetention(),
        },
        pending=(
            PendingKeep(
                category="billing",
                keep_at_least_days=None,
                previous_days=365,
                changed_at=now,
                effective_at=now + timedelta(days=7),
            ),
        ),
    )
    named = settings.categories_retention_may_keep()
    assert named == ["billing", "contracts"]
    for category in ("contracts", "notes", "billing", "account", "never-configured"):
        assert settings.may_keep(category) == (category in named)
