"""Reading small JSON request bodies with explicit limits."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from vault.domain.json_input import parse_json
from vault.domain.text import check_json_texts
from vault.errors import InvalidInput, TooLarge, UnsupportedMediaType

# Control bodies (keys, holds, settings) are small; anything bigger is a mistake.
MAX_JSON_BODY_BYTES = 64 * 1024


async def read_json_body(request: Request, max_bytes: int) -> bytes:
    """The raw body of an application/json request, refused past `max_bytes` whether
    declared by Content-Length or streamed (chunked)."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    return await read_capped(request, max_bytes)


async def read_capped(request: Request, max_bytes: int) -> bytes:
    """The whole body, refused past `max_bytes` whether declared by Content-Length or
    streamed (chunked), without holding more than that in memory."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(f"body is larger than {max_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise TooLarge(f"body is larger than {max_bytes} bytes")
    return bytes(body)


def has_body(request: Request) -> bool:
    """Whether the request sends a body at all (an optional JSON body may be left out)."""
    return (
        request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    )


async def read_json_object(
    request: Request, max_bytes: int = MAX_JSON_BODY_BYTES
) -> dict[str, Any]:
    """A control body (keys, holds, erasures, settings...): every string in it, keys
    included, has passed the one text rule (vault/domain/text.py) before any field is
    read, so no endpoint can forget it."""
    value = parse_json(await read_json_body(request, max_bytes))
    if not isinstance(value, dict):
        raise InvalidInput("body must be a JSON object", field="(body)")
    check_json_texts(value)
    return value
