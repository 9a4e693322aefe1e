"""Cutting transfers by the clock (DESIGN.md, Deletion guarantees).

A download, range read, export or upload calls `watch_transfer` once it knows the caller,
and so does every answer that carries data decrypted with a subject's key (a record's
value, an artefact's metadata, a HEAD's Content-Disposition filename, a listing of
artefacts or of disclosures, the console pages that show disclosures).
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
event `transfer_cut` is logged. A transfer lasts until its answer's last bytes have left
the process (WAIT_WRITTEN, vault/http/edge_limits.py), and holds its data keys until
then: an answer sent as one message (a seek's range, a small artefact, a record's value)
and a stream's last pieces wait there for as long as a client that stopped reading makes
them wait. Answers with nothing decrypted (problems, lists of keys, holds, erasures)
are not transfers.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vault.errors import (
    Forbidden,
    KeyDestroyed,
    KeyNoLongerLive,
    NotFound,
    Unauthenticated,
    VaultError,
)
from vault.http.edge_limits import ABORT_CONNECTION, WAIT_WRITTEN
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
    # The watchdog starts when its first check is due (`timer`), not with the transfer:
    # most transfers (a record's value, a seek's range) end within milliseconds, and a
    # task started and cancelled for each cost their request a task and a loop turn.
    timer: asyncio.TimerHandle | None = None
    task: asyncio.Task[None] | None = None
    cut: VaultError | None = None
    started: bool = False
    completed: bool = False

    def start(self, lease: TransferLease) -> None:
        if self.lease is not None:
            raise RuntimeError("one transfer per request")
        self.lease = lease
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.every, self._begin, lease, loop.time())

    def _begin(self, lease: TransferLease, started: float) -> None:
        self.timer = None
        self.task = asyncio.get_running_loop().create_task(self._run(lease, started))

    async def _run(self, lease: TransferLease, started: float) -> None:
        reason = await watch_lease(lease, every=self.every, started=started)
        if reason is None or self.deadline is None or self.deadline.expired():
            return
        self.cut = reason
        # Cancels the request task at its next wait, a stalled `send` included.
        with suppress(RuntimeError):  # the request ended meanwhile
            self.deadline.reschedule(asyncio.get_running_loop().time())

    async def stop(self, *, wait_for_release: bool = True) -> None:
        """Stop the watchdog and close the lease (its streams, and so its keys). Its
        rows in transfer_keys are released before this returns, or, for a request the
        server cancelled (the SIGTERM drain's end), in the background: that request
        must reach the access log's row before the writer stops, whatever the database
        makes the release wait for (the rows expire by the clock if it never runs)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.task is not None:
            self.task.cancel()
            with suppress(asyncio.CancelledError):
                await self.task
        if self.lease is None:
            return
        if wait_for_release:
            await self.lease.close()
            return
        await self.lease.close(release=False)
        release = asyncio.get_running_loop().create_task(self.lease.release())
        _releasing.add(release)
        release.add_done_callback(_releasing.discard)


# Releases running in the background (`_Watch.stop`), referenced until they end.
_releasing: set[asyncio.Task[None]] = set()


def watch_transfer(request: Request, principal: Principal) -> TransferLease:
    """Start watching this request as a transfer by `principal`'s key; the returned lease
    is what the service holds its data keys and streams under."""
    watch: _Watch = request.scope["state"][_WATCH]
    state = vault_state(request)
    lease = TransferLease(
        state.db, principal.tenant_id, principal.key_id, state.transfer_releases.release_later
    )
    watch.start(lease)
    return lease


def unflushed_transfer(scope: Scope) -> TransferLease | None:
    """This request's transfer lease if the read statement took holds for it without
    their own WAL flush (a read answered in one message): its access-log row's commit,
    which the answer waits for, confirms them (vault/http/middleware.py)."""
    watch: _Watch | None = scope.get("state", {}).get(_WATCH)
    if watch is None or watch.lease is None or not watch.lease.unflushed_holds:
        return None
    return watch.lease


async def _written(scope: Scope) -> None:
    """Wait until the connection's write buffer in this process is empty (the vault's
    uvicorn protocol offers this; elsewhere the answer counts as out once handed over)."""
    wait = scope.get("extensions", {}).get(WAIT_WRITTEN)
    if wait is not None:
        await wait()


def _drop_connection(scope: Scope) -> bool:
    """Reset the connection now (the vault's uvicorn protocol offers this); False where the
    server does not, which then closes it when the request fails."""
    drop = scope.get("extensions", {}).get(ABORT_CONNECTION)
    if drop is None:
        return False
    drop()
    return True


def _refusal_after_head(exc: BaseException, watch: _Watch) -> VaultError | None:
    """The vault's own refusal, raised by a watched transfer's answer after its head left
    (an export's next entry whose key was destroyed or whose artefact was deleted since
    the manifest): a cut like the watchdog's, not the vault's failure. Starlette's
    exception middleware re-raises it as a RuntimeError caused by it once the response
    has started; None for anything else."""
    if watch.lease is None or not watch.started or watch.completed:
        return None
    for error in (exc, exc.__cause__):
        # The refusals a watchdog's cut also gives (a key or entry gone, a read no longer
        # allowed, a key revoked); anything else (the database unreachable, a bug) stays
        # the vault's failure, logged and alerted on as such.
        if isinstance(error, NotFound | Forbidden | Unauthenticated):
            return error.with_traceback(None)
    return None


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
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                if watch.lease is not None:
                    await _written(scope)
                # Completed once the last message has left the process, not when it is
                # handed over: a cut landing while it waits (a client that stopped
                # reading) still cuts it, and the transfer holds its keys until then.
                watch.completed = True

        cancelled = refused_mid_answer = False
        try:
            async with asyncio.timeout(None) as deadline:
                watch.deadline = deadline
                await self.app(scope, receive, watched_send)
        except asyncio.CancelledError:
            cancelled = True  # by the server, not by the watchdog (that is TimeoutError)
            raise
        except Exception as exc:
            refusal = _refusal_after_head(exc, watch)
            if refusal is not None:
                watch.cut, refused_mid_answer = refusal, True
            # The cancellation arrives as TimeoutError, or as whatever the request raised
            # while it unwound; anything else is not a cut.
            elif watch.cut is None or not deadline.expired():
                raise
        finally:
            await watch.stop(wait_for_release=not cancelled)
        if not refused_mid_answer and (
            watch.cut is None or not deadline.expired() or watch.completed
        ):
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
