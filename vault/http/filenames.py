"""Artefact filenames at the HTTP edge: the `X-Filename` request header in, the
`Content-Disposition` response header out (RFC 6266, RFC 8187)."""

from __future__ import annotations

import re
import unicodedata
import urllib.parse

from starlette.requests import Request

from vault.errors import InvalidInput

MAX_FILENAME_LENGTH = 255
FIELD = "X-Filename"
# RFC 8187 ext-value: charset, optional language, percent-encoded UTF-8. Only UTF-8 is
# taken (RFC 8187 requires it; ISO-8859-1 is optional and today's clients send UTF-8).
_EXT_VALUE = re.compile(r"^utf-8'[A-Za-z0-9-]*'(.*)$", re.IGNORECASE | re.DOTALL)
# Directional overrides and isolates, which make "evil\u202etxt.exe" display as
# "evilexe.txt": refused like control characters.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# RFC 8187 attr-char, left as they are in filename*=; everything else is percent-encoded.
_ATTR_CHARS = "!#$&+-.^_`|~"


def filename_from_header(request: Request) -> str | None:
    """The `X-Filename` a client sent, as text: the raw header bytes decoded as UTF-8
    (Starlette would decode them as latin-1 and keep mojibake), or the RFC 8187 form
    `UTF-8''caf%C3%A9.txt`. Bytes that are not UTF-8, a second X-Filename, control or
    bidirectional-override characters, slashes, or more than 255 characters: 422."""
    values: list[bytes] = [v for k, v in request.scope["headers"] if k == b"x-filename"]
    if not values:
        return None
    if len(values) > 1:
        raise InvalidInput("send one X-Filename", field=FIELD)
    try:
        text = values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(
            "X-Filename must be UTF-8, or RFC 8187 (UTF-8''percent-encoded)", field=FIELD
        ) from None
    extended = _EXT_VALUE.match(text)
    if extended is not None:
        try:
            text = urllib.parse.unquote(extended[1], errors="strict")
        except UnicodeDecodeError:
            raise InvalidInput("X-Filename is not valid RFC 8187 UTF-8", field=FIELD) from None
    if not 1 <= len(text) <= MAX_FILENAME_LENGTH or not _plain(text):
        raise InvalidInput(
            f"X-Filename must be 1-{MAX_FILENAME_LENGTH} characters, without control "
            "characters, directional overrides or slashes",
            field=FIELD,
        )
    return text


def _plain(text: str) -> bool:
    return not any(
        c in "/\\" or c in _BIDI_CONTROLS or unicodedata.category(c) in ("Cc", "Cs") for c in text
    )


def content_disposition(filename: str | None) -> str:
    """`attachment` always (a stored text/html artefact must not render on the vault's
    origin, where the console lives), with the name when there is one: an ASCII
    `filename` for old clients and the exact name as RFC 8187 `filename*`."""
    if not filename:
        return "attachment"
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in filename)
    encoded = urllib.parse.quote(filename, safe=_ATTR_CHARS)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
