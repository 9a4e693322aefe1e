"""Which recorded restriction a restore takes as standing (vault/services/ledger_controls.py
`newest_facts`, the one rule every replayed kind uses): the change counted last under the
subject's row lock (migration 0036), not the transaction that started last; entries
recorded before the count existed rank below every counted one, and among themselves by
when their rows were written."""

from __future__ import annotations

from typing import Any

from vault.services.ledger_controls import newest_facts
from vault.services.ledger_instructions import RESTRICTION

SUBJECT = "5b0c3c1e-8f7a-4b7e-9c55-2a4a3b1d6f10"


def _entry(at: str, restricted: bool, change: int | None) -> dict[str, Any]:
    fact: dict[str, Any] = {
        "subject_id": SUBJECT,
        "subject_ref_hash": "00" * 32,
        "restricted_at": "2026-12-06T10:00:00+00:00" if restricted else None,
    }
    if change is not None:
        fact["change"] = change
    return {"key_kind": RESTRICTION, "destroyed_at": at, "fact": fact}


def _standing(*entries: dict[str, Any]) -> bool:
    [(_, fact)] = newest_facts(list(entries), RESTRICTION, "subject_id")
    return fact["restricted_at"] is not None


def test_the_change_counted_last_stands_though_its_transaction_started_first() -> None:
    # The placing started at 10:00:00 and committed after a lift started at 10:00:01.
    placing = _entry("2026-12-06T10:00:00+00:00", True, change=3)
    lift = _entry("2026-12-06T10:00:01+00:00", False, change=2)
    assert _standing(placing, lift) is True
    assert _standing(lift, placing) is True  # whatever the ledger's order


def test_a_counted_change_outranks_every_uncounted_one() -> None:
    old_lift = _entry("2026-12-06T11:00:00+00:00", False, change=None)
    counted = _entry("2026-12-06T10:00:00+00:00", True, change=1)
    assert _standing(old_lift, counted) is True


def test_uncounted_changes_rank_by_when_they_were_written() -> None:
    placed = _entry("2026-12-06T10:00:00+00:00", True, change=None)
    lifted = _entry("2026-12-06T10:00:05+00:00", False, change=None)
    assert _standing(lifted, placed) is False
