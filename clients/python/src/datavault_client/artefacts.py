"""Artefacts: large binary objects (recordings), streamed in and out."""

from __future__ import annotations

import os
import shutil
import urllib.parse
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import httpx

from datavault_client import _routes as R
from datavault_client._fields import Fields
from datavault_client._streams import CHUNK_BYTES, ContentStream, UploadSource, upload_body
from datavault_client._transport import JsonBody, Transport, json_of
from datavault_client.errors import UnexpectedResponse
from datavault_client.models import Artefact, ContentInfo, Page, PlaybackLink

DEFAULT_CONTENT_TYPE = "application/octet-stream"
# No proxy may compress content: Range offsets count the artefact's own bytes.
_IDENTITY = {"Accept-Encoding": "identity", "Accept": "*/*"}


class Download:
    """An artefact's content as it arrives: iterate for chunks, or `save(path)`. Use it as
    a context manager (or call `close()`), as it holds a connection until read."""

    def __init__(self, info: ContentInfo, stream: ContentStream) -> None:
        self.info = info
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._stream)

    def read(self) -> bytes:
        """All of it in memory: for small artefacts only."""
        return b"".join(self._stream)

    def save(self, target: str | os.PathLike[str] | BinaryIO) -> int:
        """Write the content to a path or binary file; returns the bytes written."""
        if isinstance(target, str | os.PathLike):
            with Path(target).open("wb") as file:
                return self.save(file)
        written = 0
        for chunk in self._stream:
            target.write(chunk)
            written += len(chunk)
        return written

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> Download:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Artefacts:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def upload(
        self,
        ref: str,
        source: UploadSource,
        *,
        category: str,
        content_type: str = DEFAULT_CONTENT_TYPE,
        filename: str | None = None,
        size: int | None = None,
        idempotency_key: str | None = None,
    ) -> Artefact:
        """Stream `source` to the vault as a new artefact of subject `ref` (created if
        new). `source`: a path, a binary file, bytes, or an iterable of chunks (sent
        chunked unless `size` is given; not retried, since it cannot be read twice).
        Nothing is read whole into memory."""
        headers = {}
        if filename is not None:
            headers["X-Filename"] = _filename_header(filename)
        response = self._t.call(
            R.UPLOAD_ARTEFACT, {"ref": ref}, params={"category": category},
            body=upload_body(source, content_type, size), headers=headers,
            idempotency_key=idempotency_key,
        )  # fmt: skip
        return Artefact.parse(Fields(json_of(response, R.UPLOAD_ARTEFACT), "artefact"))

    def list(
        self, ref: str, *, category: str | None = None, limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Artefact]:  # fmt: skip
        response = self._t.call(
            R.LIST_ARTEFACTS, {"ref": ref},
            params={"category": category, "limit": limit, "cursor": cursor},
        )  # fmt: skip
        return Page.parse(json_of(response, R.LIST_ARTEFACTS), "artefacts", Artefact.parse)

    def iterate(self, ref: str, *, category: str | None = None) -> Iterator[Artefact]:
        """Every artefact of the subject, newest first, page after page."""
        cursor = None
        while True:
            page = self.list(ref, category=category, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def get(self, ref: str, artefact_id: str) -> Artefact:
        response = self._t.call(R.GET_ARTEFACT, {"ref": ref, "artefact_id": artefact_id})
        return Artefact.parse(Fields(json_of(response, R.GET_ARTEFACT), "artefact"))

    def delete(self, ref: str, artefact_id: str) -> None:
        """Crypto-shred it. Under hold: `Conflict` with `.holds`."""
        self._t.call(R.DELETE_ARTEFACT, {"ref": ref, "artefact_id": artefact_id})

    def head(
        self, ref: str, artefact_id: str, *, start: int | None = None, end: int | None = None,
        last: int | None = None,
    ) -> ContentInfo:  # fmt: skip
        response = self._t.call(
            R.ARTEFACT_CONTENT_HEAD, {"ref": ref, "artefact_id": artefact_id},
            headers={**_IDENTITY, **_range_header(start, end, last)},
        )  # fmt: skip
        return ContentInfo.of(response)

    def download(
        self, ref: str, artefact_id: str, *, start: int | None = None, end: int | None = None,
        last: int | None = None,
    ) -> Download:  # fmt: skip
        """The content, streamed: all of it, bytes `start`..`end` (inclusive; `end` None =
        to the end), or the `last` n bytes. A connection that breaks half way is resumed
        from the next byte with a Range request."""
        path = {"ref": ref, "artefact_id": artefact_id}
        response = self._t.call(
            R.ARTEFACT_CONTENT, path, headers={**_IDENTITY, **_range_header(start, end, last)},
            stream=True,
        )  # fmt: skip
        info = ContentInfo.of(response)
        first, final = info.range if info.range else (0, (info.size or 0) - 1)

        def reopen(offset: int) -> httpx.Response:
            again = self._t.call(
                R.ARTEFACT_CONTENT, path,
                headers={**_IDENTITY, "Range": f"bytes={first + offset}-{final}"}, stream=True,
            )  # fmt: skip
            resumed = ContentInfo.of(again)
            if resumed.range is None or resumed.range[0] != first + offset:
                again.close()
                raise UnexpectedResponse(f"{R.ARTEFACT_CONTENT}: the resumed range does not fit")
            return again

        stream = ContentStream(response, reopen, self._t.retry, str(R.ARTEFACT_CONTENT),
                               self._t.sleep)  # fmt: skip
        return Download(info, stream)

    def download_to(
        self, ref: str, artefact_id: str, target: str | os.PathLike[str] | BinaryIO
    ) -> int:
        """Save the whole content to a path (written beside it, then moved into place, so
        a failed download leaves no partial file there) or a binary file."""
        if not isinstance(target, str | os.PathLike):
            with self.download(ref, artefact_id) as download:
                return download.save(target)
        final = Path(target)
        partial = final.with_name(final.name + ".part")
        try:
            with self.download(ref, artefact_id) as download:
                written = download.save(partial)
            shutil.move(partial, final)
        finally:
            with suppress(FileNotFoundError):
                partial.unlink()
        return written

    def link(self, ref: str, artefact_id: str, *, expires_in: int | None = None) -> PlaybackLink:
        """A URL that plays the artefact without an Authorization header (a `<video>`
        element), for `expires_in` seconds (default 900, at most 3,600)."""
        body = JsonBody({"expires_in": expires_in} if expires_in is not None else {})
        response = self._t.call(
            R.MINT_PLAYBACK_LINK, {"ref": ref, "artefact_id": artefact_id}, body=body
        )
        return PlaybackLink.parse(Fields(json_of(response, R.MINT_PLAYBACK_LINK), "link"))


def _range_header(start: int | None, end: int | None, last: int | None) -> dict[str, str]:
    if last is not None:
        if start is not None or end is not None:
            raise ValueError("give either last, or start (and end)")
        if last < 1:
            raise ValueError("last must be at least 1")
        return {"Range": f"bytes=-{last}"}
    if start is None:
        if end is not None:
            raise ValueError("end needs a start")
        return {}
    if start < 0 or (end is not None and end < start):
        raise ValueError("need 0 <= start <= end")
    return {"Range": f"bytes={start}-{'' if end is None else end}"}


def _filename_header(filename: str) -> str:
    """X-Filename as the vault takes it: printable ASCII as is, anything else (and a name
    that would read as the encoded form) RFC 8187-encoded."""
    plain = filename.isascii() and filename.isprintable()
    if plain and not filename.lower().startswith("utf-8'"):
        return filename
    return "UTF-8''" + urllib.parse.quote(filename, safe="")


__all__ = ["CHUNK_BYTES", "Artefacts", "Download"]
