"""Every request is written to the access log before its answer completes.

A response whose body is one message (every JSON answer; a range or an artefact of at
most 1 MiB, vault/services/artefacts.py WHOLE_ANSWER_BYTES) is held until its log row is
committed; if the row cannot be committed the client gets 503 instead: no unlogged
access. A streamed body (downloads) starts at once and its row is committed before the
last chunk; if that fails the connection is cut, so the client never sees a complete
answer that was not logged. A client that hangs up part way is logged too (499, with the
bytes sent so far), and so is a transfer the vault cut by the clock (vault/http/
transfers.py: the status of the reason, 401, 404 or 503, with the bytes sent so far) and
a request cancelled when the SIGTERM drain time ran out (503, with the bytes sent).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from traceback import extract_tb
from typing import Any

import structlog
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crypto.errors import IntegrityError
from vault.db.database import DEPLOYMENT_TENANT
from vault.domain.client_ip import client_ip
from vault.errors import Unavailable
from vault.http.edge_limits import EDGE_REFUSAL, REFUSAL_DETAILS
from vault.http.listed_subjects import listed_subjects
from vault.http.problems import ProblemResponse, internal_error
from vault.http.state import VaultState
from vault.http.transfers import TransferCut, unflushed_transfer
from vault.observability.integrity import integrity_failed
from vault.services.access_log import AccessEntry

log = structlog.get_logger("datavault.http")

UNMATCHED_ROUTE = "(unmatched)"
# A client's own X-Request-Id is kept only if it is this tame; else the vault makes one.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Methods outside this set are counted as "other": a client must not mint metric series.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_LOGGED_METHOD = 16
# The innermost frames of an unexpected error: where it happened, not what it said.
_LOGGED_FRAMES = 8


def _request_id(headers: list[tuple[str, str]]) -> str:
    for name, value in headers:
        if name == "x-request-id" and _SANE_REQUEST_ID.match(value):
            return value
    return uuid.uuid4().hex


class AccessLogFailed(Exception):
    """Raised to cut a streamed response whose access-log row could not be written."""


class ResponseCut(Exception):
    """Raised (to uvicorn, which then drops the connection) in place of an error that
    broke a streamed answer half way; it carries only the request id."""


def log_unhandled_error(exc: BaseException, request_id: str) -> None:
    """The type, request id and code locations of an unexpected error; never its message
    or a traceback's text. A message can quote the request's data (asyncpg's quoted 40
    characters of a hold note holding a person's name); the request id ties this line to
    the request line and the access-log row."""
    log.error(
        "unhandled_error",
        request_id=request_id,
        error_type=type(exc).__name__,
        error_at=[
            f"{'/'.join(Path(frame.filename).parts[-2:])}:{frame.lineno} {frame.name}"
            for frame in extract_tb(exc.__traceback__)[-_LOGGED_FRAMES:]
        ],
    )


@dataclass
class _Exchange:
    request_id: str
    started: float
    status: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    held_start: Message | None = None
    streaming: bool = False
    logged: bool = False
    # A row committing while the request still works (`log_answer_ahead`): the status
    # and bytes it states, and its commit. The answer's own row is then this one when
    # it says the same, else a second row for the request.
    ahead: tuple[int, int, int, asyncio.Future[None]] | None = None


# scope["state"] key: the request's exchange, for `log_answer_ahead`.
_EXCHANGE = "access_log_exchange"


def log_answer_ahead(scope: Scope, status: int, bytes_out: int) -> bool:
    """Start committing the request's access-log row now, stating the answer the handler
    is about to make (`status`, `bytes_out` bytes, in one message), so that its commit
    runs while the handler still works (a seek's range: unwrapping its keys and opening
    the range). The answer still goes out only after the commit (`_finish_single`). If
    the answer then differs (the range failed its integrity check, the blob could not be
    read, a cut), a second row for the same request says what it was, as for a cut
    after its row (README, Access log: a request's last row states its outcome). False: nothing
    started (the log is not running), the row is written with the answer as usual."""
    state = scope.get("state", {})
    exchange: _Exchange | None = state.get(_EXCHANGE)
    if exchange is None or exchange.ahead is not None or exchange.logged:
        return False
    vault: VaultState = scope["app"].state.vault
    entry = _entry(scope, exchange, status, bytes_out, first_row=True)
    try:
        committed = vault.access_log.submit(entry)
    except Unavailable:
        return False
    _confirms_holds(scope, entry, committed)
    # Retrieved here too, in case the request ends on a path that never looks (it always
    # does today): an unretrieved failure would be logged by asyncio with its traceback.
    committed.add_done_callback(_retrieved)
    exchange.ahead = (status, exchange.bytes_in, bytes_out, committed)
    return True


def _confirms_holds(scope: Scope, entry: AccessEntry, committed: asyncio.Future[None]) -> None:
    """A row that confirms its transfer's unflushed holds: the transfer's release waits
    for its commit (TransferLease.confirmed_by)."""
    if entry.held_by_transfer is not None:
        lease = unflushed_transfer(scope)
        if lease is not None and lease.id == entry.held_by_transfer:
            lease.confirmed_by(committed)


def _retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _log_unavailable(request_id: str) -> ProblemResponse:
    """The answer to a request that must not go unlogged while the log cannot be written."""
    return ProblemResponse(
        503, "unavailable", "access log unavailable", request_id, headers={"Retry-After": "5"}
    )


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        vault: VaultState = scope["app"].state.vault
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
        exchange = _Exchange(request_id=_request_id(headers), started=time.perf_counter())
        peer = scope.get("client")
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = exchange.request_id
        state[_EXCHANGE] = exchange
        state["client_ip"] = client_ip(
            peer[0] if peer else None,
            [v for k, v in headers if k == "x-forwarded-for"],
            vault.settings.trusted_proxies,
        )

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                exchange.bytes_in += len(message.get("body", b""))
            return message

        async def logging_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", exchange.request_id.encode()),
                ]
                exchange.held_start = message
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            body = message.get("body", b"")
            more = message.get("more_body", False)
            exchange.bytes_out += len(body)
            if not more and not exchange.streaming:
                await self._finish_single(vault, scope, exchange, message, send)
                return
            if exchange.held_start is not None:
                exchange.streaming = True
                await send(exchange.held_start)
                exchange.held_start = None
            if not more and not await self._record(vault, scope, exchange):
                raise AccessLogFailed("access log unavailable; response cut")
            await send(message)

        refusal = state.get(EDGE_REFUSAL)
        if refusal is not None:
            # A head over the limits, or not HTTP at all (vault/http/edge_limits.py):
            # answered here, so it has a request id and an access-log row like any other.
            slug, detail = REFUSAL_DETAILS[refusal]
            response = ProblemResponse(refusal, slug, detail, exchange.request_id)
            await response(scope, counting_receive, logging_send)
            return
        if vault.access_log.failing and scope["method"] not in _SAFE_METHODS:
            # A write would commit before its access-log row could: while the log is
            # failing, writes are refused before they run. (A read's answer is withheld
            # anyway when its row fails.) The refusal is logged too once it can be, which
            # is what clears the flag.
            await _log_unavailable(exchange.request_id)(scope, counting_receive, logging_send)
            return
        vault.access_log.request_started()
        try:
            await self._serve(vault, scope, exchange, counting_receive, logging_send, receive)
        finally:
            vault.access_log.request_ended()

    async def _serve(
        self,
        vault: VaultState,
        scope: Scope,
        exchange: _Exchange,
        counting_receive: Receive,
        logging_send: Send,
        receive: Receive,
    ) -> None:
        try:
            await self.app(scope, counting_receive, logging_send)
            if not exchange.logged:
                # The app returned without a last body message: the client hung up during
                # a streamed answer (Starlette stops the stream and returns normally). The
                # access still happened, as far as it went: 499 with the bytes sent.
                exchange.status = 499
                await self._record(vault, scope, exchange)
        except AccessLogFailed:
            raise
        except TransferCut as cut:
            # Cut by the clock after the status line went out: the row must not say it
            # was answered, so it gets the status of the reason and the bytes sent.
            if not exchange.logged:
                exchange.status = cut.status
                await self._record(vault, scope, exchange)
            else:
                # Its row was written before its last message (a one-message answer, or
                # a stream's last chunk), which the cut caught while it waited in the
                # process: a second row for the same request says it was cut. Its
                # bytes_out is 0: what left is at most what the first row counted.
                exchange.status, exchange.bytes_in, exchange.bytes_out = cut.status, 0, 0
                await self._record(vault, scope, exchange)
            if not cut.connection_dropped:
                raise ResponseCut(exchange.request_id) from None
            return
        except asyncio.CancelledError:
            # The server cancelled the request: the SIGTERM drain time ran out while it
            # was still streaming (or receiving an upload). What went out, went out:
            # logged as cut by the vault (503) with the bytes sent, before the writer
            # stops (it waits for requests still unwinding), then the cancellation goes on.
            if not exchange.logged:
                exchange.status = 503
                await self._record(vault, scope, exchange)
            raise
        except ClientDisconnect:
            # The client went away mid-request (an interrupted upload): nothing to send,
            # but the attempt is logged. 499 is the conventional "client closed" code.
            if not exchange.logged:
                exchange.status = 499
                await self._record(vault, scope, exchange)
            return
        except Exception as exc:
            # Starlette re-raises an error after the status line as a RuntimeError caused
            # by it.
            integrity = next(
                (e for e in (exc, exc.__cause__) if isinstance(e, IntegrityError)), None
            )
            if integrity is not None:
                # Stored data failed its check after the status line (a download or an
                # export cut): an integrity failure, counted and logged once (where it
                # was found, vault/observability/integrity.py), not an unexpected error.
                integrity_failed(
                    vault.metrics, integrity, "ciphertext", request_id=exchange.request_id
                )
                log.error("response_cut", request_id=exchange.request_id, reason="integrity")
            else:
                log_unhandled_error(exc, exchange.request_id)
            if exchange.streaming or exchange.logged:
                # A streamed answer failed half way (e.g. a segment failed its integrity
                # check): the connection is cut, and the log says the request failed.
                if not exchange.logged:
                    exchange.status = 500
                    await self._record(vault, scope, exchange)
                # Not `raise`: uvicorn would log the original with its message.
                raise ResponseCut(exchange.request_id) from None
            exchange.status = 500
            response = internal_error(exchange.request_id)
            await response(scope, receive, logging_send)

    async def _finish_single(
        self, vault: VaultState, scope: Scope, exchange: _Exchange, body: Message, send: Send
    ) -> None:
        start = exchange.held_start
        exchange.held_start = None
        if await self._record(vault, scope, exchange):
            assert start is not None
            await send(start)
            await send(body)
            return
        # The row could not be written: the request fails instead of going unlogged.
        vault.metrics.access_log_failures.inc()
        refusal = _log_unavailable(exchange.request_id)
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    *refusal.raw_headers,
                    (b"x-request-id", exchange.request_id.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": refusal.body})

    async def _record(self, vault: VaultState, scope: Scope, exchange: _Exchange) -> bool:
        """The request's row; a second one (a cut after its row was written) confirms no
        holds and brings no further subjects' rows: its first row did. A row started
        ahead (`log_answer_ahead`) is this row when it states the same answer; else it
        was the first row, and this one says what the answer was instead."""
        first_row = not exchange.logged
        exchange.logged = True
        ok = True
        entry: AccessEntry | None = None
        if exchange.ahead is not None:
            status, bytes_in, bytes_out, committed = exchange.ahead
            try:
                # Cancelled here (a cut, the drain's end), the row started ahead is still
                # awaited by the next call, so a row saying what happened instead always
                # comes after it in the chain.
                await asyncio.shield(committed)
            except Unavailable:
                ok = False
            exchange.ahead = None
            if (status, bytes_in, bytes_out) != (
                exchange.status, exchange.bytes_in, exchange.bytes_out,
            ):  # fmt: skip
                # The answer was not the one announced: this row says what it was, after
                # the first (committed before it, so it comes later in the chain). If
                # the first could not be written, this one is the request's first row.
                entry = _entry(scope, exchange, exchange.status, exchange.bytes_out, not ok)
        else:
            entry = _entry(scope, exchange, exchange.status, exchange.bytes_out, first_row)
        if entry is not None:
            try:
                committed = vault.access_log.submit(entry)
                _confirms_holds(scope, entry, committed)
                await asyncio.shield(committed)
                ok = True
            except Unavailable:
                ok = False
        duration = time.perf_counter() - exchange.started
        state = scope.get("state", {})
        key = state.get("principal") or state.get("refused_key")
        route_path = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
        method = scope["method"] if scope["method"] in _KNOWN_METHODS else "other"
        vault.metrics.observe_request(method, route_path, exchange.status, duration)
        vault.metrics.bytes_in.inc(exchange.bytes_in)
        vault.metrics.bytes_out.inc(exchange.bytes_out)
        log.info(
            "request",
            request_id=exchange.request_id,
            method=method,
            route=route_path,
            status=exchange.status if ok else 503,
            duration_ms=round(duration * 1000, 2),
            api_key_id=str(key.key_id) if key else None,
            access_logged=ok,
        )
        return ok


def _entry(
    scope: Scope, exchange: _Exchange, status: int, bytes_out: int, first_row: bool
) -> AccessEntry:
    """The request's row stating `status` and `bytes_out`. Its first row confirms the
    holds its read took without their own WAL flush and brings the further subjects'
    rows; a later one (a cut, a correction) does neither."""
    state = scope.get("state", {})
    principal = state.get("principal")
    # A genuine key refused for its address is logged under its tenant, not as a use.
    key = principal or state.get("refused_key")
    route = scope.get("route")
    route_path = getattr(route, "path", None) or UNMATCHED_ROUTE
    ip = state.get("client_ip")
    tenant_id = key.tenant_id if key else DEPLOYMENT_TENANT
    # A read answered in one message took its hold without waiting for the WAL
    # flush: this row's commit, which its answer waits for, confirms the hold (and
    # makes it durable). The hold itself lasts until the answer is sent.
    lease = unflushed_transfer(scope) if first_row else None
    if lease is not None and lease.tenant_id != tenant_id:
        lease = None
    subject_ref_hash = state.get("subject_ref_hash")
    # The request's first row brings one per further subject whose data the answer
    # carried (vault/http/listed_subjects.py); a cut's second row does not repeat them.
    also_under = (
        tuple(h for h in listed_subjects(state) if h != subject_ref_hash) if first_row else ()
    )
    return AccessEntry(
        tenant_id=tenant_id,
        at=datetime.now(UTC),
        request_id=exchange.request_id,
        method=scope["method"][:_MAX_LOGGED_METHOD],
        route=route_path,
        status=status,
        ip=str(ip) if ip is not None else None,
        api_key_id=key.key_id if key else None,
        key_authenticated=principal is not None,
        key_prefix=state.get("key_prefix"),
        bytes_in=exchange.bytes_in,
        bytes_out=bytes_out,
        subject_ref_hash=subject_ref_hash,
        artefact_id=state.get("artefact_id"),
        held_by_transfer=lease.id if lease is not None else None,
        held_keys=lease.unflushed_holds if lease is not None else (),
        also_under=also_under,
    )
