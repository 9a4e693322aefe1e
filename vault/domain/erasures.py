"""The erasure state machine: its statuses and which may follow which. Every status
change goes through `check_transition` (vault/services/erasure_transitions.py applies it
with its event row), so no module writes a status the table does not allow."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum


class ErasureStatus(StrEnum):
    SCHEDULED = "scheduled"  # waiting for not_before (grace period, rate brake)
    IN_PROGRESS = "in_progress"  # shredded; waiting for the shred ledger
    COMPLETED = "completed"  # shredded, ledger durable, nothing kept
    HELD = "held"  # done but for categories kept by holds or statutory retention
    CANCELLED = "cancelled"  # cancelled before not_before


# status -> the statuses it may become. SCHEDULED -> SCHEDULED: the rate brake released,
# or the instruction extended to data written since (both journaled as events).
TRANSITIONS: dict[ErasureStatus | None, frozenset[ErasureStatus]] = {
    None: frozenset({ErasureStatus.SCHEDULED}),
    ErasureStatus.SCHEDULED: frozenset(
        {ErasureStatus.SCHEDULED, ErasureStatus.IN_PROGRESS, ErasureStatus.CANCELLED}
    ),
    ErasureStatus.IN_PROGRESS: frozenset({ErasureStatus.COMPLETED, ErasureStatus.HELD}),
    # Released or expired holds, ended retention: more is shredded, back to the ledger.
    ErasureStatus.HELD: frozenset({ErasureStatus.IN_PROGRESS}),
    ErasureStatus.COMPLETED: frozenset(),
    ErasureStatus.CANCELLED: frozenset(),
}

# DESIGN.md: only these answer a repeated request with themselves; a held erasure never
# absorbs a later instruction.
RUNNING = frozenset({ErasureStatus.SCHEDULED, ErasureStatus.IN_PROGRESS})


class InvalidTransition(Exception):
    """A status change the state machine does not allow: a bug, never a client error."""


def check_transition(current: ErasureStatus | None, new: ErasureStatus) -> None:
    if new not in TRANSITIONS[current]:
        raise InvalidTransition(f"an erasure cannot go from {current} to {new}")


def is_overdue(status: str, due_at: datetime, now: datetime) -> bool:
    """Past its deadline and not done yet. Held erasures are done but for what holds and
    statutory retention keep, by design: never overdue."""
    return status in RUNNING and due_at < now


def status_after_shred(kept_anything: bool) -> ErasureStatus:
    """Once every destroyed key is in the shred ledger: held while something is kept."""
    return ErasureStatus.HELD if kept_anything else ErasureStatus.COMPLETED
