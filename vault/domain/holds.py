"""Legal-hold rules that need no database."""

from __future__ import annotations

from enum import StrEnum


class HoldReason(StrEnum):
    BILLING = "billing"
    FRAUD_INVESTIGATION = "fraud_investigation"
    LITIGATION = "litigation"
    LAW_ENFORCEMENT = "law_enforcement"
    REGULATORY = "regulatory"


# DESIGN.md: releasing these takes two different compliance keys (ask, then confirm).
TWO_KEY_RELEASE = frozenset({HoldReason.LITIGATION, HoldReason.LAW_ENFORCEMENT})

MAX_REFERENCE_LENGTH = 200
MAX_NOTE_LENGTH = 2000
MAX_RELEASE_REASON_LENGTH = 1000
