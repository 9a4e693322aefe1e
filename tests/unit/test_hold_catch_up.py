"""A hold the restored database knows catches up with the ledger's newer record of it only
the ways a hold can change: an expiry later or removed, a release that stays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vault.services.ledger_instructions import HoldTerms, caught_up

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_an_expiry_only_moves_later_or_goes() -> None:
    known = HoldTerms(T0, None)
    assert caught_up(known, HoldTerms(T0 + timedelta(days=1), None)).expires_at == T0 + timedelta(
        days=1
    )
    assert caught_up(known, HoldTerms(T0 - timedelta(days=1), None)).expires_at == T0
    assert caught_up(known, HoldTerms(None, None)).expires_at is None
    assert caught_up(HoldTerms(None, None), HoldTerms(T0, None)).expires_at is None


def test_a_release_stays_and_an_older_record_changes_nothing() -> None:
    released = HoldTerms(None, T0)
    assert caught_up(HoldTerms(None, None), released) == released
    assert caught_up(released, HoldTerms(None, None)) == released
    assert caught_up(released, HoldTerms(None, T0 + timedelta(days=1))).released_at == T0


def test_catching_up_twice_ends_where_once_did() -> None:
    known, recorded = HoldTerms(T0, None), HoldTerms(T0 + timedelta(days=3), T0 + timedelta(1))
    once = caught_up(known, recorded)
    assert caught_up(once, recorded) == once
