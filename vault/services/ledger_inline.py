"""Publishing a control's instruction entry before the answer (vault/services/
ledger_instructions.py): a backup restored after the answer then keeps the change.

The outbox row commits with the change; the ledger publisher would publish it within its
interval anyway. Publishing it inline closes that window for the changes a tenant acts on
at once (a hold placed or released, a release request withdrawn, an erasure cancelled, a
key revoked, a closure requested or cancelled). If the blob store fails or hangs, the
answer goes out anyway: the change holds in PostgreSQL and the publisher's next round
publishes it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("datavault.ledger")

# How long a change waits for its shred-ledger entry before answering anyway (a blob
# store that hangs). Cut off, a publish leaves at most an object the next round adopts.
LEDGER_WAIT_SECONDS = 10.0


class InlineLedger:
    """`publish`: publishes pending shred-ledger rows (workers/ledger.py); None: nothing
    is published inline (the publisher's rounds do it)."""

    def __init__(self, publish: Callable[[], Awaitable[object]] | None) -> None:
        self._publish = publish
        # One inline publish per process at a time: each holds the ledger head's row lock
        # and more connections, and the pool must not fill with waiters.
        self._publishing = asyncio.Lock()

    async def make_durable(self, deferred_event: str, **ids: str) -> None:
        """Publish now; on failure log `deferred_event` with `ids` (never a subject
        reference) and the error's type, and return."""
        if self._publish is None:
            return
        try:
            async with asyncio.timeout(LEDGER_WAIT_SECONDS), self._publishing:
                await self._publish()
        except Exception as exc:  # the change stands; the publisher's next round retries
            log.warning(deferred_event, **ids, error_type=type(exc).__name__)
