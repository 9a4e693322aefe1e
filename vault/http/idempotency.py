"""The Idempotency-Key header on writes that create something (API.md Conventions).

The same key with the same request (per API key, for 24 hours) gets the first answer
again, with `Idempotent-Replayed: true`, and nothing is done twice; with a different
request, 422; while the first is still running, 409. Only successful (2xx) answers are
kept: after an error the key is free again, so a corrected or repeated request runs.

Storing the answer or freeing the key happens after the handler's own transaction has
committed, in another one; a database cut there (a failover) is retried on a fresh
connection for about 1.5 s, and if that fails too the handler's answer still goes out:
its write happened (`_settle`).

The request is identified by method, path, query, content type and the SHA-256 of the
body. An artefact upload is not read twice: it is identified by its declared length,
type and filename instead of its bytes, so a replayed upload is answered before its
body is read.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive

from crypto.replay import ReplaySealer
from vault.errors import Conflict, InvalidInput, Unavailable
from vault.http.auth import authenticate, presented_token
from vault.http.body import read_capped
from vault.http.state import vault_state
from vault.services import idempotency
from vault.services.idempotency import KeySlot

log = structlog.get_logger("datavault.http.idempotency")

Endpoint = Callable[[Request], Awaitable[Response]]

HEADER: Final = "Idempotency-Key"
MAX_KEY_LENGTH: Final = 255
# The largest body a creating JSON request may have (a record: 1 MiB); read in full to
# fingerprint it, so the cap applies before anything else does.
MAX_FINGERPRINTED_BODY: Final = 1024 * 1024
# Cache-Control too: an answer that holds a credential (a new key's secret, a playback
# link) says no-store when it is replayed as well.
_KEPT_HEADERS: Final = ("location", "cache-control")
# Settling a key after its handler ran is tried this often when the database is
# unavailable, pausing 0.1 s, then twice as long each time (1.5 s in all): a failover's
# cut connection is closed by Database, so each try gets a fresh pooled one.
_SETTLE_ATTEMPTS: Final = 5
_SETTLE_FIRST_PAUSE: Final = 0.1


def idempotent(handler: Endpoint, *, streamed_body: bool = False) -> Endpoint:
    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        idempotency_key = request.headers.get(HEADER)
        if idempotency_key is None:
            return await handler(request)
        _check_key(idempotency_key)
        principal = await authenticate(request)  # the handler checks the scope
        sealer = ReplaySealer(presented_token(request), principal.tenant_id, principal.key_id)
        parts = [
            request.method.encode(),
            request.scope.get("raw_path", request.url.path.encode()),
            request.url.query.encode(),
            request.headers.get("content-type", "").encode("latin-1"),
        ]
        if streamed_body:
            parts += [
                request.headers.get("content-length", "").encode("latin-1"),
                request.headers.get("x-filename", "").encode("latin-1"),
            ]
            inner = request
        else:
            body = await read_capped(request, MAX_FINGERPRINTED_BODY)
            parts.append(hashlib.sha256(body).digest())
            inner = Request(request.scope, _replaying(body, request.receive))
        slot = KeySlot(principal.tenant_id, principal.key_id, sealer.key_id(idempotency_key))
        fingerprint = sealer.fingerprint(parts)
        db = vault_state(request).db
        standing = await idempotency.claim(db, slot, fingerprint)
        if standing is not None:
            return _replay(request, standing, fingerprint, sealer, slot)
        release = functools.partial(idempotency.release, db, slot)
        try:
            response = await handler(inner)
        except BaseException:
            await _settle(request, "idempotency_release_failed", release)
            raise
        body_bytes = getattr(response, "body", None)
        if 200 <= response.status_code < 300 and isinstance(body_bytes, bytes):
            sealed = sealer.seal(_encode(response, body_bytes, request), slot.key_id)
            store = functools.partial(
                idempotency.store_answer, db, slot, response.status_code, sealed
            )
            await _settle(request, "idempotency_answer_not_stored", store)
        else:
            await _settle(request, "idempotency_release_failed", release)
        return response

    endpoint.__dict__["idempotent"] = True  # read by the API description's test
    return endpoint


def _check_key(value: str) -> None:
    if not 1 <= len(value) <= MAX_KEY_LENGTH or not value.isprintable():
        raise InvalidInput(
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable characters", field=HEADER
        )


def _replaying(body: bytes, receive: Receive) -> Receive:
    """The body once more for the handler, then the connection's own messages (a
    disconnect) as before."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _replay(
    request: Request, standing: idempotency.IdempotencyRow, fingerprint: bytes,
    sealer: ReplaySealer, slot: KeySlot,
) -> Response:  # fmt: skip
    if not hmac.compare_digest(standing.fingerprint, fingerprint):
        raise InvalidInput(
            f"this {HEADER} was used for a different request in the last 24 hours", field=HEADER
        )
    if standing.status is None or standing.answer_sealed is None:
        raise Conflict(f"a request with this {HEADER} is still being processed; retry later")
    answer: dict[str, Any] = json.loads(sealer.open(standing.answer_sealed, slot.key_id))
    _note_for_access_log(request, answer.get("logged") or {})
    headers = {**answer["headers"], "Idempotent-Replayed": "true"}
    return Response(
        base64.b64decode(answer["body"]),
        status_code=standing.status,
        media_type=answer["media_type"],
        headers=headers,
    )


def _encode(response: Response, body: bytes, request: Request) -> bytes:
    kept = {name: response.headers[name] for name in _KEPT_HEADERS if name in response.headers}
    return json.dumps(
        {
            "media_type": response.media_type or response.headers.get("content-type"),
            "headers": kept,
            "body": base64.b64encode(body).decode("ascii"),
            "logged": _noted_for_access_log(request),
        }
    ).encode()


def _noted_for_access_log(request: Request) -> dict[str, str]:
    """What the first answer's access-log row named (the subject's pseudonym, the
    artefact): kept with the answer, sealed like it, so its replay, which hands out the
    same, is logged with the same (DESIGN.md, Access log)."""
    noted: dict[str, str] = {}
    ref_hash = getattr(request.state, "subject_ref_hash", None)
    if isinstance(ref_hash, bytes):
        noted["subject_ref_hash"] = ref_hash.hex()
    artefact_id = getattr(request.state, "artefact_id", None)
    if isinstance(artefact_id, uuid.UUID):
        noted["artefact_id"] = str(artefact_id)
    return noted


def _note_for_access_log(request: Request, noted: dict[str, str]) -> None:
    """The replay's row names what the first answer's did (answers stored before these
    were kept name nothing)."""
    if "subject_ref_hash" in noted:
        request.state.subject_ref_hash = bytes.fromhex(noted["subject_ref_hash"])
    if "artefact_id" in noted:
        request.state.artefact_id = uuid.UUID(noted["artefact_id"])


async def _settle(request: Request, failed: str, settle: Callable[[], Awaitable[None]]) -> None:
    """`settle()` (store the answer, release the key) after the handler ran, retried
    while the database is unavailable; never raises, since the handler's outcome stands
    either way: its answer (or error) goes out as it was. A failure is logged as `failed`
    with the request id, never the key, fingerprint or answer. An answer not stored
    leaves the claim standing: its retry gets 409 until the claim lapses after an hour.

    Shielded: a client that went away cancels the request, and the key must still be
    settled for its retry."""

    async def tries() -> None:
        pause = _SETTLE_FIRST_PAUSE
        for attempt in range(1, _SETTLE_ATTEMPTS + 1):
            try:
                await settle()
                return
            except Unavailable as exc:
                error: Exception = exc
                if attempt < _SETTLE_ATTEMPTS:
                    await asyncio.sleep(pause)
                    pause *= 2
            except Exception as exc:  # not a cut: trying again would not help
                error = exc
                break
        log.warning(
            failed,
            request_id=getattr(request.state, "request_id", None),
            error_type=type(error).__name__,
            attempts=attempt,
        )

    await asyncio.shield(tries())
