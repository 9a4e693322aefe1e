"""Wake-ups for the workers that complete erasures (issue 19): PostgreSQL NOTIFY instead of
waiting for the next poll.

The transaction that creates work for a job also sends `NOTIFY <channel>, '<tenant id>'`:
a brake released or a hold released wakes the erasure executor; a shred that leaves an
erasure waiting on the shred ledger wakes the ledger publisher. PostgreSQL delivers a
notification only when (and if) its transaction commits, so a job never wakes for work
that was rolled back, and it finds the work committed when it looks. Each process that
runs the jobs LISTENs on one connection and sets the job's wake event.

An erasure request that is due at once wakes the executor too, but not from its own
transaction: under a burst every request's commit queued on
the lock PostgreSQL takes to commit a NOTIFY (one at a time, each through its WAL flush),
which bounded the requests answered per second (issue 19, second round). The request
hands its tenant to a `WakeupSender` once it has committed, which sends one statement of
NOTIFYs for whatever gathered while the previous one was on its way. A process that stops
between the commit and that statement leaves the erasure to the executor's poll.

Notifications are a shortcut, never the guarantee: one can be lost (the LISTEN
connection drops, the process restarts, the work was created by hand), so the jobs still
poll on their interval, and every (re)connection wakes them all once in case something
was sent while nobody listened. The payload is a tenant id: no key, no subject.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

import structlog

from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.services.pg_listener import PgListener

log = structlog.get_logger("datavault.wakeups")

ERASURES_DUE: Final = "datavault_erasures_due"
"""An erasure became due (requested without grace, brake released) or a hold that kept
one was released: the erasure executor's channel."""
LEDGER_PENDING: Final = "datavault_ledger_pending"
"""A shred committed an erasure's ledger outbox rows: the shred-ledger publisher's."""
CHANNELS: Final = (ERASURES_DUE, LEDGER_PENDING)

Q = Queries("wakeups")


async def notify(conn: Connection, channel: str, tenant_id: object) -> None:
    """In the transaction that creates the work: the channel's job wakes once it commits.
    PostgreSQL folds identical notifications of one transaction into one."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown wake-up channel {channel!r}")
    await conn.execute(Q.notify, channel, str(tenant_id))


class WakeupSender:
    """NOTIFY after the work committed, coalesced: one statement at a time per process,
    for every (channel, tenant) asked for since the last one went out. A wake-up asked
    for while one is on its way goes out right after it. One that cannot be sent is
    dropped (logged): the jobs' polling finds the work."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._asked: set[tuple[str, str]] = set()
        self._task: asyncio.Task[None] | None = None

    def wake(self, channel: str, tenant_id: object) -> None:
        if channel not in CHANNELS:
            raise ValueError(f"unknown wake-up channel {channel!r}")
        self._asked.add((channel, str(tenant_id)))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send(), name="wakeups")

    async def _send(self) -> None:
        while self._asked:
            asked, self._asked = sorted(self._asked), set()
            try:
                await self._db.untenanted_fetchrow(
                    Q.notify_many, [c for c, _ in asked], [t for _, t in asked]
                )
            except Exception as exc:
                log.warning("wakeup_not_sent", error_type=type(exc).__name__)

    async def flush(self) -> None:
        """Wait for the wake-ups asked for so far to be sent (tests, shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)


class WakeupListener:
    """One LISTEN connection per process; sets `events[channel]` on each notification,
    and every event once per (re)connection."""

    def __init__(self, database_url: str, events: Mapping[str, asyncio.Event]) -> None:
        unknown = set(events) - set(CHANNELS)
        if unknown:
            raise ValueError(f"unknown wake-up channels {sorted(unknown)}")
        self._events = dict(events)
        self._listener = PgListener(
            database_url, self._events, self._on_notify,
            name="wakeup-listener", unavailable_event="wakeup_listener_unavailable",
            on_connected=self._wake_all,
        )  # fmt: skip
        self.connected = self._listener.connected

    def start(self) -> None:
        self._listener.start()

    async def stop(self) -> None:
        await self._listener.stop()

    def _wake_all(self) -> None:
        # Whatever was sent while nobody listened: every job looks once.
        for event in self._events.values():
            event.set()

    def _on_notify(self, _conn: Any, _pid: int, channel: str, _payload: object) -> None:
        event = self._events.get(channel)
        if event is not None:
            event.set()
