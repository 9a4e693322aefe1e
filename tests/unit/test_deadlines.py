"""Erasure deadlines (API.md "Erasure"; DESIGN.md "Deletion guarantees"): `due_at` is the
request time plus 30 days, or plus one calendar month if that is sooner (GDPR Art. 12(3))."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from vault.domain.deadlines import (
    ERASURE_RUN_MARGIN,
    add_calendar_month,
    erasure_due_at,
    erasure_not_before,
)


def _at(year: int, month: int, day: int, hour: int = 10, minute: int = 30) -> datetime:
    return datetime(year, month, day, hour, minute, 15, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("requested", "due"),
    [
        # One calendar month from 31 Jan has no 31st: the month's last day, sooner than
        # 30 days (2 Mar, or 1 Mar in a leap year).
        ((2025, 1, 31), (2025, 2, 28)),
        ((2024, 1, 31), (2024, 2, 29)),
        ((2100, 1, 31), (2100, 2, 28)),  # divisible by 100, not by 400: no 29 Feb
        ((2000, 1, 31), (2000, 2, 29)),  # divisible by 400: a leap year
        ((2025, 1, 29), (2025, 2, 28)),
        ((2024, 1, 30), (2024, 2, 29)),
        # A 31-day month: one calendar month (15 Apr) is later than 30 days (14 Apr).
        ((2025, 3, 15), (2025, 4, 14)),
        ((2025, 1, 1), (2025, 1, 31)),
        ((2025, 7, 1), (2025, 7, 31)),
        # February is short: one calendar month (1 Mar) is sooner than 30 days (3 Mar).
        ((2025, 2, 1), (2025, 3, 1)),
        ((2024, 2, 1), (2024, 3, 1)),  # leap year: 30 days would be 2 Mar
        ((2025, 2, 28), (2025, 3, 28)),
        ((2024, 2, 29), (2024, 3, 29)),
        # A 30-day month: both rules give the same day.
        ((2025, 4, 1), (2025, 5, 1)),
        ((2025, 4, 30), (2025, 5, 30)),
        # End of a 31-day month into a 30-day one: 30 Apr / 30 Jun either way.
        ((2025, 3, 31), (2025, 4, 30)),
        ((2025, 5, 31), (2025, 6, 30)),
        ((2025, 8, 31), (2025, 9, 30)),
        # Across the year end.
        ((2025, 12, 15), (2026, 1, 14)),
        ((2025, 12, 31), (2026, 1, 30)),
        ((2025, 12, 1), (2025, 12, 31)),
        ((2024, 11, 30), (2024, 12, 30)),
    ],
    ids=lambda value: "-".join(f"{part:02d}" for part in value),
)
def test_due_at_is_30_days_or_one_calendar_month_whichever_is_sooner(
    requested: tuple[int, int, int], due: tuple[int, int, int]
) -> None:
    moment = _at(*requested)
    result = erasure_due_at(moment)
    # The time of day is kept to the microsecond; only the date moves.
    assert result == _at(*due), result
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (_at(2025, 1, 31), _at(2025, 2, 28)),
        (_at(2024, 1, 31), _at(2024, 2, 29)),
        (_at(2025, 3, 31), _at(2025, 4, 30)),
        (_at(2025, 3, 15), _at(2025, 4, 15)),
        (_at(2025, 12, 31), _at(2026, 1, 31)),
        (_at(2025, 2, 28), _at(2025, 3, 28)),
    ],
    ids=str,
)
def test_add_calendar_month_clamps_to_the_last_day_of_the_next_month(
    moment: datetime, expected: datetime
) -> None:
    assert add_calendar_month(moment) == expected


def test_every_day_of_four_years_gets_a_deadline_within_the_legal_bounds() -> None:
    """Every request time from 2023 to 2026 (a leap year among them), at a minute before
    midnight: never later than 30 days, never sooner than the shortest month allows, and
    either exactly 30 days or the same (or last) day of the next month."""
    moment = datetime(2023, 1, 1, 23, 59, tzinfo=UTC)
    checked = 0
    while moment.year < 2027:
        due = erasure_due_at(moment)
        assert timedelta(days=28) <= due - moment <= timedelta(days=30), moment
        assert due.time() == moment.time() and due.tzinfo is UTC, moment
        next_month = date(moment.year + moment.month // 12, moment.month % 12 + 1, 1)
        same_day_next_month = due.year == next_month.year and due.month == next_month.month
        if due - moment != timedelta(days=30):
            # Sooner than 30 days: that can only be the calendar month rule.
            assert same_day_next_month, moment
            assert due.day == moment.day or (
                due.day < moment.day and (due + timedelta(days=1)).month != due.month
            ), moment
        moment += timedelta(days=1)
        checked += 1
    assert checked == 4 * 365 + 1


@pytest.mark.parametrize(
    "zone",
    [timezone(timedelta(hours=2)), timezone(timedelta(hours=-5)), ZoneInfo("Europe/Berlin")],
    ids=["plus-2h", "minus-5h", "europe-berlin"],
)
def test_timezone_aware_input_keeps_its_zone_and_the_local_calendar(zone: timezone) -> None:
    """An aware request time in another zone: the deadline is aware, in the same zone, and
    counted on that zone's calendar (31 Jan local → 28 Feb local, same wall time)."""
    requested = datetime(2025, 1, 31, 9, 0, tzinfo=zone)
    due = erasure_due_at(requested)
    assert due.tzinfo is zone
    assert due.replace(tzinfo=None) == datetime(2025, 2, 28, 9, 0)
    assert timedelta(days=28) <= due - requested <= timedelta(days=30)


def test_timezone_aware_deadline_compares_with_utc_times() -> None:
    """The deadline is a real instant: comparing it with UTC times (as the executor and the
    overdue metric do) works and gives the same answer as in the request's own zone."""
    requested = datetime(2025, 3, 15, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    due = erasure_due_at(requested)
    assert due == datetime(2025, 4, 15, 4, 30, tzinfo=UTC)  # 14 Apr 23:30 at -05:00
    assert due.astimezone(UTC) - requested.astimezone(UTC) == timedelta(days=30)
    assert erasure_due_at(requested.astimezone(UTC)) == due


# The longest grace period a tenant may set (DESIGN.md: at most 29 days).
LONGEST_GRACE = timedelta(days=29)


@pytest.mark.parametrize(
    "requested", [(2027, 2, 1), (2028, 2, 1), (2027, 1, 31), (2027, 3, 1), (2027, 12, 31)]
)
@pytest.mark.parametrize("braked", [False, True])
def test_not_before_never_passes_the_deadline(
    requested: tuple[int, int, int], braked: bool
) -> None:
    """The grace period (and the rate brake's 24 h) is clamped per request: the erasure
    becomes due at the latest ERASURE_RUN_MARGIN before its own deadline."""
    at = _at(*requested)
    not_before = erasure_not_before(at, LONGEST_GRACE, braked)
    assert not_before <= erasure_due_at(at) - ERASURE_RUN_MARGIN


def test_a_grace_that_fits_is_kept_to_the_second() -> None:
    at = _at(2027, 3, 1)  # 30 days to 31 March: 29 days of grace fit
    assert erasure_not_before(at, LONGEST_GRACE, braked=False) == at + LONGEST_GRACE


def test_february_clamps_the_longest_grace_to_the_margin_before_the_deadline() -> None:
    at = _at(2027, 2, 1)  # due 1 March: 28 days
    assert erasure_due_at(at) == at.replace(month=3)
    assert erasure_not_before(at, LONGEST_GRACE, braked=False) == at.replace(month=3) - (
        ERASURE_RUN_MARGIN
    )


def test_the_rate_brake_still_holds_back_a_day_without_grace() -> None:
    at = _at(2027, 2, 1)
    assert erasure_not_before(at, timedelta(0), braked=True) == at + timedelta(hours=24)
    assert erasure_not_before(at, timedelta(0), braked=False) == at
