"""Erasure deadlines (GDPR Art. 12(3)): 30 days, or one calendar month if sooner."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

ERASURE_DEADLINE = timedelta(days=30)
# DESIGN.md: more erasures in an hour than the tenant's brake allows wait this long,
# in case a stolen erasure key is being used; an admin can let them through sooner.
ERASURE_BRAKE_DELAY = timedelta(hours=24)


def add_calendar_month(moment: datetime) -> datetime:
    """The same day next month, or the month's last day when it has no such day."""
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def erasure_due_at(requested_at: datetime) -> datetime:
    return min(requested_at + ERASURE_DEADLINE, add_calendar_month(requested_at))
