"""/v1/subjects/{ref}/artefacts: streamed upload, metadata, ranged download, shred."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from crypto.limits import DEFAULT_SEGMENT_SIZE
from vault.domain.ranges import ByteRange, RangeNotSatisfiable, parse_range
from vault.domain.scopes import Scope
from vault.domain.subject_refs import SubjectRef
from vault.errors import InvalidInput, MalformedInput, TimedOut
from vault.http.edge_limits import ask_for_body_messages
from vault.http.filenames import content_disposition, filename_from_header
from vault.http.middleware import log_answer_ahead
from vault.http.models.common import Problem
from vault.http.models.subjects import Artefact, ArtefactListQuery, ArtefactPage, UploadQuery
from vault.http.operation import (
    BINARY,
    Answer,
    Header,
    RawBody,
    Tag,
    created,
    no_content,
    ok,
    operation,
    render,
)
from vault.http.pages import page_after_time
from vault.http.params import decode_cursor_parts, encode_cursor_parts, path_uuid
from vault.http.problems import MEDIA_TYPE as PROBLEM_MEDIA
from vault.http.problems import ProblemResponse
from vault.http.render import rfc3339
from vault.http.state import vault_state
from vault.http.subject_path import subject_location
from vault.http.subject_request import access_for
from vault.http.transfers import watch_transfer
from vault.services.api_keys import Principal
from vault.services.artefacts import WHOLE_ANSWER_BYTES, Content, Decided
from vault.services.artefacts import Artefact as StoredArtefact

MAX_CONTENT_TYPE_LENGTH = 255
DEFAULT_CONTENT_TYPE = "application/octet-stream"


async def _idle_limited(chunks: AsyncIterator[bytes], seconds: float) -> AsyncIterator[bytes]:
    """Give up on a body that stops arriving: the upload is abandoned (its key shredded,
    its partial blob removed) and the connection freed. One deadline moved per chunk,
    armed only while the next chunk is awaited (a consumer that is slow to ask is not
    the client's fault), instead of a task per chunk."""
    iterator = aiter(chunks)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(None) as deadline:
            while True:
                deadline.reschedule(loop.time() + seconds)
                try:
                    chunk = await anext(iterator)
                except StopAsyncIteration:
                    return
                deadline.reschedule(None)
                yield chunk
    except TimeoutError:
        raise TimedOut(f"no upload data for {seconds:g} s") from None


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise MalformedInput("Content-Length is not a number")
    return int(value)


_ARTEFACT_PATH = "/v1/subjects/{ref}/artefacts/{artefact_id}"
_FILENAME = Header(
    "X-Filename",
    "The file's name, at most 255 characters, no control characters, directional "
    "overrides or slashes: raw UTF-8, or RFC 8187 (UTF-8''percent-encoded). Bytes that are "
    "not UTF-8: 422.",
)
_UPLOAD_BODY = RawBody(
    "application/octet-stream",
    BINARY,
    "The artefact's bytes, streamed (Content-Length or chunked). Any Content-Type is "
    "accepted and kept as content_type (application/octet-stream when absent).",
)


@operation(
    "uploadArtefact", tag=Tag.ARTEFACTS,
    summary="Upload an artefact (raw body, streamed; Content-Length or chunked)",
    scope=Scope.INGEST, answers={201: created(Artefact, _ARTEFACT_PATH)},
    raw_body=_UPLOAD_BODY, headers=(_FILENAME,), errors=(400, 403, 408, 413, 422),
    description="Creates the subject if it is new. 413 above the deployment's maximum or the "
    "tenant's max_artefact_bytes for the category; 408 when the body stops arriving.",
)  # fmt: skip
async def upload_artefact(
    request: Request, caller: Principal, ref: SubjectRef, query: UploadQuery
) -> Response:
    state = vault_state(request)
    content_type = (
        request.headers.get("content-type", DEFAULT_CONTENT_TYPE).strip() or DEFAULT_CONTENT_TYPE
    )
    if len(content_type) > MAX_CONTENT_TYPE_LENGTH or not content_type.isprintable():
        raise InvalidInput("Content-Type is too long or not printable", field="Content-Type")
    # The body in messages of one segment each: the upload cuts it into segments, so
    # smaller ones only cost more wake-ups and per-message work (issue 19, sixth round).
    ask_for_body_messages(request.scope, DEFAULT_SEGMENT_SIZE)
    artefact = await state.artefacts.upload(
        caller.tenant_id,
        ref,
        category=query.category,
        content_type=content_type,
        filename=filename_from_header(request),
        body=_idle_limited(request.stream(), state.settings.upload_idle_timeout_seconds),
        declared_length=_declared_length(request),
        lease=watch_transfer(request, caller),
    )
    request.state.artefact_id = artefact.id
    return render(
        Artefact.of(artefact, ref.reveal()),
        status=201,
        headers={"Location": subject_location(ref, "artefacts", str(artefact.id))},
    )


@operation(
    "listArtefacts", tag=Tag.ARTEFACTS, summary="List the subject's artefacts, newest first",
    scope=Scope.READ, answers={200: ok(ArtefactPage)}, errors=(404,),
)  # fmt: skip
async def list_artefacts(
    request: Request, caller: Principal, ref: SubjectRef, query: ArtefactListQuery
) -> Response:
    # A transfer (vault/http/transfers.py): the page's filenames are decrypted, so every
    # data key they need is held, and watched, until the answer has left.
    artefacts = await vault_state(request).artefacts.list(
        caller.tenant_id, ref, access_for(caller), category=query.category,
        after=page_after_time(decode_cursor_parts(query.cursor, 2)), limit=query.limit,
        hold=watch_transfer(request, caller),
    )  # fmt: skip
    items = [Artefact.of(a, ref.reveal()) for a in artefacts]
    last = artefacts[-1] if len(artefacts) == query.limit else None
    return render(ArtefactPage(items, _cursor(last)))


def _cursor(last: StoredArtefact | None) -> str | None:
    return encode_cursor_parts(rfc3339(last.created_at), str(last.id)) if last else None


@operation(
    "getArtefact", tag=Tag.ARTEFACTS, summary="An artefact's metadata",
    scope=Scope.READ, answers={200: ok(Artefact)}, errors=(404, 410),
    key_checked_in_statement=True,
)  # fmt: skip
async def show_artefact(request: Request, caller: Principal, ref: SubjectRef) -> Response:
    artefact_id = path_uuid(request.path_params["artefact_id"])
    request.state.artefact_id = artefact_id
    # A transfer: its filename is decrypted, its key held until the answer has left.
    artefact = await vault_state(request).artefacts.describe(
        caller.tenant_id, caller.key_to_check, ref, artefact_id, access_for(caller),
        watch_transfer(request, caller),
    )  # fmt: skip
    return render(Artefact.of(artefact, ref.reveal()))


# What an artefact's content may do if a browser opens it as a document or a worker:
# nothing (the stored Content-Type is the uploader's choice, e.g. text/html or
# application/javascript; the console lives on the same origin).
CONTENT_CSP = "default-src 'none'; sandbox"

# The headers of an artefact's content, whole (200) or ranged (206), GET or HEAD
# (`_content_headers`).
_CONTENT_HEADERS = (
    Header("Content-Length", "Bytes of the body (GET sends them)", {"type": "integer"}),
    Header("ETag", "The artefact id in quotes (artefacts never change)"),
    Header("Accept-Ranges", "Ranges are in bytes", {"type": "string", "const": "bytes"}),
    Header("Cache-Control", "private, no-store"),
    Header(
        "Content-Disposition",
        "attachment, with filename (ASCII) and filename* (RFC 8187, UTF-8) when the artefact "
        "has a filename",
    ),
    Header("X-Content-Type-Options", "nosniff", {"type": "string", "const": "nosniff"}),
    Header(
        "Content-Security-Policy",
        "default-src 'none'; sandbox: the uploader's content never acts as a page or script "
        "of the vault's origin",
        {"type": "string", "const": CONTENT_CSP},
    ),
)
RANGE_HEADER = Header(
    "Range",
    "One byte range: bytes=a-b, bytes=a- or bytes=-n (the last n bytes). Several ranges are "
    "not served as multipart.",
)


def content_answers(with_body: bool) -> dict[int, Answer]:
    # The plaintext goes out under the artefact's own Content-Type, so any media type.
    # HEAD answers with the same headers and no body.
    body = BINARY if with_body else None
    whole, part = ("The whole plaintext", "The requested range")
    if not with_body:
        whole, part = (f"Headers of {whole.lower()}", f"Headers of {part.lower()}")
    return {
        200: Answer(whole, media="*/*", schema=body, headers=_CONTENT_HEADERS),
        206: Answer(
            part, media="*/*", schema=body,
            headers=(*_CONTENT_HEADERS, Header("Content-Range", "bytes FIRST-LAST/SIZE")),
        ),
        416: Answer(
            "The range lies outside the artefact", media=PROBLEM_MEDIA,
            model=Problem if with_body else None,
            headers=(Header("Content-Range", "bytes */SIZE"),),
        ),
    }  # fmt: skip


@operation(
    "getArtefactContent", tag=Tag.ARTEFACTS,
    summary="The plaintext, streamed; one byte range gives 206",
    scope=Scope.READ, answers=content_answers(with_body=True), headers=(RANGE_HEADER,),
    errors=(404, 410), key_checked_in_statement=True,
)  # fmt: skip
async def artefact_content(request: Request, caller: Principal, ref: SubjectRef) -> Response:
    return await _content(request, caller, ref)


@operation(
    "headArtefactContent", tag=Tag.ARTEFACTS,
    summary="The headers GET would send, without the body",
    scope=Scope.READ, answers=content_answers(with_body=False), headers=(RANGE_HEADER,),
    errors=(404, 410), key_checked_in_statement=True,
)  # fmt: skip
async def artefact_content_headers(
    request: Request, caller: Principal, ref: SubjectRef
) -> Response:
    return await _content(request, caller, ref)


async def _content(request: Request, caller: Principal, ref: SubjectRef) -> Response:
    # The key's liveness is checked in the statement that finds the artefact
    # (key_checked_in_statement), and on the clock while the body streams
    # (vault/http/transfers.py).
    artefact_id = path_uuid(request.path_params["artefact_id"])
    request.state.artefact_id = artefact_id
    service = vault_state(request).artefacts
    # A transfer from the statement that finds the artefact: that statement records its
    # data key as held (migration 0032), one round trip fewer per read. A HEAD opens no
    # content, but its Content-Disposition carries the decrypted filename: it holds the
    # key too, until its headers have left (one message).
    lease = watch_transfer(request, caller)
    one_message = answered_in_one_message(request)
    located = await service.locate(
        caller.tenant_id, caller.key_to_check, ref, artefact_id, access_for(caller), lease,
        one_message=one_message, decided=seek_logged_ahead(request, one_message),
    )  # fmt: skip

    async def open_body(byte_range: ByteRange | None) -> Content:
        return await service.open_content(located, byte_range, lease)

    return await content_response(request, located.artefact, open_body)


def seek_logged_ahead(request: Request, one_message: bool) -> Decided | None:
    """For `locate`'s `decided`: a GET answered in one message logs ahead
    (`_logging_ahead`); anything else (a HEAD, a stream) logs with its answer."""
    return _logging_ahead(request) if one_message and request.method == "GET" else None


def _logging_ahead(request: Request) -> Decided:
    """A seek's access-log row committed while its keys are unwrapped and its range
    opened, not after (issue 19, seventh round): once the read is decided, the answer it
    is about to make (206 and the range's length) is known, and the commit runs in
    PostgreSQL while the vault decrypts. The answer still waits for the commit; one that
    turns out different (the range fails its integrity check, the blob cannot be read,
    a cut) gets a second row saying what it was (vault/http/middleware.py)."""

    async def decided(size: int) -> None:
        try:
            byte_range = parse_range(request.headers.get("range"), size)
        except RangeNotSatisfiable:
            return  # 416: logged with its answer
        length = byte_range.length if byte_range else size
        if length > WHOLE_ANSWER_BYTES:
            return  # not one message
        if log_answer_ahead(request.scope, 206 if byte_range else 200, length):
            # Two turns of the event loop: the access-log writer takes the row, then its
            # commit's task sends the statement; opening the range does not yield until
            # it is done, so without them the commit would only start after it.
            await asyncio.sleep(0)
            await asyncio.sleep(0)

    return decided


_BOUNDED_RANGE = re.compile(r"bytes=(\d{1,19})-(\d{1,19})")


def answered_in_one_message(request: Request) -> bool:
    """Whether the answer is known before the artefact is read to be at most
    WHOLE_ANSWER_BYTES, and so sent as one message after its access-log row commits: a
    Range of the form first-last no longer than that (a player's seek). Anything else may
    stream, and its transfer's hold is committed durably before any byte."""
    if request.method == "HEAD":
        return True  # headers only
    match = _BOUNDED_RANGE.fullmatch(request.headers.get("range", ""))
    if match is None:
        return False
    first, last = int(match[1]), int(match[2])
    return first <= last and last - first + 1 <= WHOLE_ANSWER_BYTES


async def content_response(
    request: Request,
    artefact: StoredArtefact,
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
    if content.whole is not None:
        # Already decrypted and checked whole (a seek's range): one message, without a
        # streaming response's task group and disconnect listener per request.
        return Response(content.whole, status_code=status, headers=headers)
    return StreamingResponse(content.body, status_code=status, headers=headers)


def _content_headers(
    artefact: StoredArtefact, length: int, byte_range: Any, size: int
) -> dict[str, str]:
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
        # And should it be opened anyway (a playback link, whose URL is the vault's
        # origin's, pasted in a tab), it runs nothing there: no script, no requests.
        "Content-Security-Policy": CONTENT_CSP,
    }
    if byte_range is not None:
        headers["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end}/{size}"
    return headers


def _unsatisfiable(request: Request, size: int) -> Response:
    return ProblemResponse(
        416, "range-not-satisfiable", f"the artefact has {size} bytes", request.state.request_id,
        headers={"Content-Range": f"bytes */{size}"},
    )  # fmt: skip


@operation(
    "deleteArtefact", tag=Tag.ARTEFACTS,
    summary="Crypto-shred an artefact; its blob is removed within 5 minutes",
    scope=Scope.INGEST, answers={204: no_content("Shredded")}, errors=(404, 409, 410),
    description="409 under a legal hold (with holds), or while the subject's processing is "
    "restricted (problem type restricted).",
)  # fmt: skip
async def delete_artefact(request: Request, caller: Principal, ref: SubjectRef) -> Response:
    artefact_id = path_uuid(request.path_params["artefact_id"])
    request.state.artefact_id = artefact_id
    await vault_state(request).artefacts.delete(caller.tenant_id, ref, artefact_id)
    return Response(status_code=204)
