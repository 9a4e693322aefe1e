"""/v1/subjects/{ref}/artefacts: streamed upload, metadata, ranged download, shred."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from vault.domain.ranges import ByteRange, RangeNotSatisfiable, parse_range
from vault.domain.scopes import Scope
from vault.errors import InvalidInput, MalformedInput, TimedOut
from vault.http.auth import require
from vault.http.filenames import content_disposition, filename_from_header
from vault.http.pages import page_after_time, page_params
from vault.http.params import encode_cursor_parts, path_uuid
from vault.http.problems import ProblemResponse
from vault.http.render import json_response, rfc3339
from vault.http.state import vault_state
from vault.http.subject_path import subject_location, subject_ref
from vault.http.subject_request import access_for, note_subject
from vault.http.transfers import watch_transfer
from vault.services.artefacts import Artefact, Content

MAX_CONTENT_TYPE_LENGTH = 255
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def render_artefact(artefact: Artefact, ref: str) -> dict[str, Any]:
    return {
        "id": artefact.id,
        "subject_ref": ref,
        "subject_ref_hash": artefact.subject.ref_hash.hex(),
        "category": artefact.category,
        "content_type": artefact.content_type,
        "filename": artefact.filename,
        "size": artefact.size,
        "sha256": artefact.sha256,
        "created_at": artefact.created_at,
        "expires_at": artefact.expires_at,
    }


async def _idle_limited(chunks: AsyncIterator[bytes], seconds: float) -> AsyncIterator[bytes]:
    """Give up on a body that stops arriving: the upload is abandoned (its key shredded,
    its partial blob removed) and the connection freed."""
    iterator = aiter(chunks)
    while True:
        try:
            chunk = await asyncio.wait_for(anext(iterator), timeout=seconds)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise TimedOut(f"no upload data for {seconds:g} s") from None
        yield chunk


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise MalformedInput("Content-Length is not a number")
    return int(value)


async def upload_artefact(request: Request) -> Response:
    principal = await require(request, Scope.INGEST)
    ref = subject_ref(request)
    state = vault_state(request)
    await note_subject(request, principal.tenant_id, ref)
    content_type = (
        request.headers.get("content-type", DEFAULT_CONTENT_TYPE).strip() or DEFAULT_CONTENT_TYPE
    )
    if len(content_type) > MAX_CONTENT_TYPE_LENGTH or not content_type.isprintable():
        raise InvalidInput("Content-Type is too long or not printable", field="Content-Type")
    artefact = await state.artefacts.upload(
        principal.tenant_id,
        ref,
        category=request.query_params.get("category"),
        content_type=content_type,
        filename=filename_from_header(request),
        body=_idle_limited(request.stream(), state.settings.upload_idle_timeout_seconds),
        declared_length=_declared_length(request),
        lease=watch_transfer(request, principal),
    )
    request.state.artefact_id = artefact.id
    return json_response(
        render_artefact(artefact, ref.reveal()),
        status=201,
        headers={"Location": subject_location(ref, "artefacts", str(artefact.id))},
    )


async def list_artefacts(request: Request) -> Response:
    principal = await require(request, Scope.READ)
    ref = subject_ref(request)
    await note_subject(request, principal.tenant_id, ref)
    limit, after = page_params(request, {"category"})
    artefacts = await vault_state(request).artefacts.list(
        principal.tenant_id, ref, access_for(principal),
        category=request.query_params.get("category") or None,
        after=page_after_time(after), limit=limit,
    )  # fmt: skip
    items = [render_artefact(a, ref.reveal()) for a in artefacts]
    last = artefacts[-1] if len(artefacts) == limit else None
    return json_response({"items": items, "next_cursor": _cursor(last)})


def _cursor(last: Artefact | None) -> str | None:
    return encode_cursor_parts(rfc3339(last.created_at), str(last.id)) if last else None


async def show_artefact(request: Request) -> Response:
    principal = await require(request, Scope.READ)
    ref = subject_ref(request)
    await note_subject(request, principal.tenant_id, ref)
    artefact_id = path_uuid(request.path_params["artefact_id"])
    request.state.artefact_id = artefact_id
    artefact = await vault_state(request).artefacts.describe(
        principal.tenant_id, ref, artefact_id, access_for(principal)
    )
    return json_response(render_artefact(artefact, ref.reveal()))


async def artefact_content(request: Request) -> Response:
    principal = await require(request, Scope.READ)
    ref = subject_ref(request)
    await note_subject(request, principal.tenant_id, ref)
    artefact_id = path_uuid(request.path_params["artefact_id"])
    request.state.artefact_id = artefact_id
    service = vault_state(request).artefacts
    access = access_for(principal)
    artefact = await service.describe(principal.tenant_id, ref, artefact_id, access)

    async def open_body(byte_range: ByteRange | None) -> Content:
        return await service.open_content(
            principal.tenant_id, ref, artefact_id, access, byte_range,
            watch_transfer(request, principal),
        )  # fmt: skip

    return await content_response(request, artefact, open_body)


async def content_response(
    request: Request,
    artefact: Artefact,
    open_body: Callable[[ByteRange | None], Awaitable[Content]],
) -> Response:
    """An artefact's plaintext as API.md says: a single `Range` (206, or 416 when it cannot
    be satisfied), `HEAD` with the same headers and no body (and no transfer)."""
    try:
        byte_range = parse_range(request.headers.get("range"), artefact.size)
    except RangeNotSatisfiable:
        return _unsatisfiable(request, artefact.size)
    status = 206 if byte_range else 200
    length = byte_range.length if byte_range else artefact.size
    headers = _content_headers(artefact, length, byte_range, artefact.size)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    content = await open_body(byte_range)
    return StreamingResponse(content.body, status_code=status, headers=headers)


def _content_headers(artefact: Artefact, length: int, byte_range: Any, size: int) -> dict[str, str]:
    headers = {
        "Content-Type": artefact.content_type,
        "Content-Length": str(length),
        # Artefacts never change: the id is a strong validator.
        "ETag": f'"{artefact.id}"',
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-store",
        # A download, never a page: the stored Content-Type is the uploader's choice.
        "Content-Disposition": content_disposition(artefact.filename),
        "X-Content-Type-Options": "nosniff",
    }
    if byte_range is not None:
        headers["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end}/{size}"
    return headers


def _unsatisfiable(request: Request, size: int) -> Response:
    return ProblemResponse(
        416, "range-not-satisfiable", f"the artefact has {size} bytes", request.state.request_id,
        headers={"Content-Range": f"bytes */{size}"},
    )  # fmt: skip


async def delete_artefact(request: Request) -> Response:
    principal = await require(request, Scope.INGEST)
    ref = subject_ref(request)
    await note_subject(request, principal.tenant_id, ref)
    artefact_id = path_uuid(request.path_params["artefact_id"])
    request.state.artefact_id = artefact_id
    await vault_state(request).artefacts.delete(principal.tenant_id, ref, artefact_id)
    return Response(status_code=204)
