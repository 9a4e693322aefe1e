"""One LISTEN connection per process that outlives every failure: connect, listen on the
channels, tell the owner it is (re)connected, wait until the connection is lost, close it,
and try again a second later. What a notification means, and what to do after a gap in
which some may have been missed, is the owner's (kek_invalidation.py, wakeups.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any, Final

import asyncpg
import structlog

log = structlog.get_logger("datavault.pg_listener")

_RECONNECT_SECONDS: Final = 1.0

NotifyHandler = Callable[[Any, int, str, object], None]


class PgListener:
    """`on_connected` runs on every (re)connection, before `connected` is set;
    `on_lost` after the connection dropped (notifications may have been missed)."""

    def __init__(
        self,
        database_url: str,
        channels: Iterable[str],
        on_notify: NotifyHandler,
        *,
        name: str,
        unavailable_event: str,
        on_connected: Callable[[], None] = lambda: None,
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self._url = database_url
        self._channels = tuple(channels)
        self._on_notify = on_notify
        self._name = name
        self._unavailable_event = unavailable_event
        self._on_connected = on_connected
        self._on_lost = on_lost
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._url)
                self._lost.clear()
                conn.add_termination_listener(self._on_terminated)
                for channel in self._channels:
                    await conn.add_listener(channel, self._on_notify)
                self._on_connected()
                self.connected.set()
                await self._lost.wait()
            except Exception as exc:  # the listener must outlive any failure: retry
                log.warning(self._unavailable_event, error_type=type(exc).__name__)
            finally:
                self.connected.clear()
                self._on_lost()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(_RECONNECT_SECONDS)

    def _on_terminated(self, _conn: Any) -> None:
        self._lost.set()
