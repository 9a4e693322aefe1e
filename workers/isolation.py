"""One item a job cannot process (a bug, a damaged row) must not stall every item behind
it: the item's transaction rolls back, the failure is logged and the job goes on; the
item is tried again next pass. The database being away is not such a failure: that ends
the pass, as it would anyway."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from vault.db.database import CONNECTION_ERRORS
from vault.errors import Unavailable

log = structlog.get_logger("datavault.workers")


@contextmanager
def isolated(event: str, failed: set[uuid.UUID]) -> Iterator[list[uuid.UUID]]:
    """Run one item's work; the caller appends the item's id once it has one. If the work
    fails after that, the id goes into `failed` and `event` is logged with it (ids only:
    no data, no error text), and the exception goes no further."""
    claimed: list[uuid.UUID] = []
    try:
        yield claimed
    except Exception as exc:
        if not claimed or isinstance(exc, (Unavailable, *CONNECTION_ERRORS)):
            raise
        failed.update(claimed)
        log.error(event, item_id=str(claimed[0]), error=type(exc).__name__)
