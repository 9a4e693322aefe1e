"""Cutting transfers by the clock (DESIGN.md, Deletion guarantees).

A download, range read, export or upload calls `watch_transfer` once it knows the caller.
From then until the request ends a watchdog task confirms the transfer's lease every
TRANSFER_RECHECK_SECONDS (services/transfers.py), independently of the client: a client
that stops reading blocks the response's `send`, and nothing that waits for the next
read would ever run again. When the lease fails (a data key destroyed, the API key
revoked or expired, its tenant closed, or the read path would now refuse the read: the
subject restricted, or the artefact kept by an erasure, for a caller who is not
compliance) or cannot be confirmed in time, the watchdog expires the request's deadline:
the request task is cancelled wherever it waits (a stalled `send` included), then

- if the response has started, the connection is dropped with a reset, so nothing still
  queued reaches the client, and the access log records the request with the status of
  the reason (401, 403, 404 or 503; never the status line that was sent) and the bytes
  sent;
- if not (an upload still receiving its body), the reason is answered as a problem.

Either way the lease's streams are closed, which releases their data keys, and the
event `transfer_cut` is logged. HEAD and single-message answers are not transfers.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vault.errors import Forbidden, KeyDestroyed, KeyNoLongerLive, NotFound, VaultError
from vault.http.edge_limits import ABORT_CONNECTION
from vault.http.problems import problem_for, status_for
from vault.http.state import VaultState, vault_state
from vault.observability import events
from vault.services.api_keys import Principal
from vault.services.transfers import TRANSFER_RECHECK_SECONDS, TransferLease, watch_lease

_WATCH = "transfer_watch"  # scope["state"] key


class TransferCut(Exception):
    """Raised to the access-log middleware for a transfer cut after its response started;
    carries the status its log row gets and whether the connection is gone already."""

    def __init__(self, status: int, *, connection_dropped: bool) -> None:
        super().__init__(status)
        self.status = status
        self.connection_dropped = connection_dropped


def _reason(error: VaultError) -> str:
    if isinstance(error, KeyNoLongerLive):
        return "api_key_not_live"
    if isinstance(error, KeyDestroyed):
        return "data_key_destroyed"
    if isinstance(error, Forbidden | NotFound):
        return "no_longer_readable"  # restricted, or kept by an erasure: compliance only
    return "unconfirmed"


@dataclass
class _Watch:
    every: float
    deadline: asyncio.Timeout | None = None
    lease: TransferLease | None = None
    task: asyncio.Task[None] | None = None
    cut: VaultError | None = None
    started: bool = False
    completed: bool = False

    def start(self, lease: TransferLease) -> None:
        if self.lease is not None:
            raise RuntimeError("one transfer per request")
        self.lease = lease
        self.task = asyncio.get_running_loop().create_task(self._run(lease))

    async def _run(self, lease: TransferLease) -> None:
        reason = await watch_lease(lease, every=self.every)
        if reason is None or self.deadline is None or self.deadline.expired():
            return
        self.cut = reason
        # Cancels the request task at its next wait, a stalled `send` included.
        with suppress(RuntimeError):  # the request ended meanwhile
            self.deadline.reschedule(asyncio.get_running_loop().time())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with suppress(asyncio.CancelledError):
                await self.task
        if self.lease is not None:
            await self.lease.close()


def watch_transfer(request: Request, principal: Principal) -> TransferLease:
    """Start watching this request as a transfer by `principal`'s key; the returned lease
    is what the service holds its data keys and streams under."""
    watch: _Watch = request.scope["state"][_WATCH]
    lease = TransferLease(vault_state(request).db, principal.tenant_id, principal.key_id)
    watch.start(lease)
    return lease


def idle_transfer(scope: Scope) -> TransferLease | None:
    """This request's transfer lease if it holds rows in transfer_keys but no key any
    more (a read answered in one message: decrypted whole before its status line), so
    its release can ride on the access-log row's commit (vault/http/middleware.py)."""
    watch: _Watch | None = scope.get("state", {}).get(_WATCH)
    if watch is None or watch.lease is None or not watch.lease.idle:
        return None
    return watch.lease


def _drop_connection(scope: Scope) -> bool:
    """Reset the connection now (the vault's uvicorn protocol offers this); False where the
    server does not, which then closes it when the request fails."""
    drop = scope.get("extensions", {}).get(ABORT_CONNECTION)
    if drop is None:
        return False
    drop()
    return True


class TransferWatchMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        vault: VaultState = scope["app"].state.vault
        watch = _Watch(vault.settings.transfer_recheck_seconds or TRANSFER_RECHECK_SECONDS)
        scope.setdefault("state", {})[_WATCH] = watch

        async def watched_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                watch.started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                watch.completed = True
            await send(message)

        try:
            async with asyncio.timeout(None) as deadline:
                watch.deadline = deadline
                await self.app(scope, receive, watched_send)
        except Exception:
            # The cancellation arrives as TimeoutError, or as whatever the request raised
            # while it unwound; anything else is not a cut.
            if watch.cut is None or not deadline.expired():
                raise
        finally:
            await watch.stop()
        if watch.cut is None or not deadline.expired() or watch.completed:
            return  # not cut, or the whole answer was out before the cut landed
        await self._cut(vault, scope, receive, send, watch)

    async def _cut(
        self, vault: VaultState, scope: Scope, receive: Receive, send: Send, watch: _Watch
    ) -> None:
        reason, request_id = watch.cut, scope["state"].get("request_id")
        assert reason is not None and watch.lease is not None  # only a watched transfer is cut
        vault.metrics.transfers_cut.labels(reason=_reason(reason)).inc()
        events.transfer_cut(
            watch.lease.tenant_id,
            request_id,
            watch.lease.api_key_id,
            _reason(reason),
            started=watch.started,
        )
        if not watch.started:
            await problem_for(reason, request_id)(scope, receive, send)
            return
        raise TransferCut(status_for(reason), connection_dropped=_drop_connection(scope))
