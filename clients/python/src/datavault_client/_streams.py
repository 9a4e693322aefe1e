"""Artefact bodies in and out without holding them in memory.

Uploads read their source in chunks as the connection takes them. A file (a path, or a
seekable binary file object) is sent with its length and can be sent again from its start
if a retry is needed; an iterator of chunks is sent once, chunked unless its size is
given. Downloads hand out chunks as they arrive and, when the connection breaks in the
middle, continue with a `Range` request from the first byte not yet received.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, Final

import httpx

from datavault_client._transport import Body
from datavault_client.errors import ConnectionFailed, UnexpectedResponse
from datavault_client.retry import RetryPolicy

# Read size for uploads and downloads: a few of these are all a transfer holds in memory.
CHUNK_BYTES: Final = 256 * 1024

UploadSource = str | os.PathLike[str] | BinaryIO | bytes | Iterable[bytes]


class _FileBody(Body):
    """A path: opened afresh for every try, read in chunks."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        self.length = os.stat(self._path).st_size

    def chunks(self) -> Iterator[bytes]:
        with open(self._path, "rb") as source:
            yield from iter(lambda: source.read(CHUNK_BYTES), b"")


class _SeekableBody(Body):
    """An open binary file: sent from where it stood when given, again after a retry."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._start = source.tell()
        self.length = source.seek(0, io.SEEK_END) - self._start
        source.seek(self._start)

    def chunks(self) -> Iterator[bytes]:
        self._source.seek(self._start)
        remaining = self.length or 0
        while remaining > 0:
            chunk = self._source.read(min(CHUNK_BYTES, remaining))
            if not chunk:
                raise ValueError("the file got shorter while it was uploaded")
            remaining -= len(chunk)
            yield chunk


class _BytesBody(Body):
    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self.length = len(self._data)

    def chunks(self) -> bytes:
        return self._data


class _OnceBody(Body):
    """An iterator of chunks (a recorder that does not know its size yet): sent once."""

    def __init__(self, chunks: Iterable[bytes], length: int | None) -> None:
        self._chunks = chunks
        self.length = length
        self._used = False

    @property
    def replayable(self) -> bool:
        return False

    def chunks(self) -> Iterator[bytes]:
        if self._used:
            raise ValueError("an iterator body can be sent only once")
        self._used = True
        return iter(self._chunks)


def upload_body(source: UploadSource, content_type: str, size: int | None) -> Body:
    body: Body
    if isinstance(source, str | os.PathLike):
        body = _FileBody(source)
    elif isinstance(source, bytes | bytearray | memoryview):
        body = _BytesBody(bytes(source))
    elif isinstance(source, io.IOBase) or hasattr(source, "read"):
        file: BinaryIO = source  # type: ignore[assignment]  # a binary file object
        if file.seekable():
            body = _SeekableBody(file)
        else:
            body = _OnceBody(iter(lambda: file.read(CHUNK_BYTES), b""), size)
    else:
        body = _OnceBody(source, size)
    if size is not None and body.length is not None and size != body.length:
        raise ValueError(f"size says {size} bytes, the source has {body.length}")
    body.content_type = content_type
    return body


Reopen = Callable[[int], httpx.Response]


class ContentStream:
    """The chunks of one download, continued after a broken connection.

    `reopen(offset)` asks for the same content again from byte `offset` of this download
    (a `Range` request). Artefacts never change (the ETag is the id), so the pieces join
    to exactly the bytes asked for; if the vault cut the transfer on purpose (the data
    was erased, the key revoked), the new request fails with that reason instead.
    """

    def __init__(
        self,
        response: httpx.Response,
        reopen: Reopen,
        retry: RetryPolicy,
        operation: str,
        sleep: Callable[[float], None],
    ) -> None:
        self._response = response
        self._reopen = reopen
        self._retry = retry
        self._operation = operation
        self._sleep = sleep
        self._expected = int(response.headers.get("content-length", "-1"))
        self.received = 0

    def __iter__(self) -> Iterator[bytes]:
        attempt = 1
        while True:
            try:
                for chunk in self._response.iter_raw(CHUNK_BYTES):
                    self.received += len(chunk)
                    yield chunk
                self._response.close()
                if self._expected >= 0 and self.received != self._expected:
                    raise UnexpectedResponse(f"{self._operation}: the content ended early")
                return
            except httpx.TransportError as exc:
                self._response.close()
                wait = self._retry.wait_for(attempt, None)
                if wait is None or (self._expected >= 0 and self.received >= self._expected):
                    raise ConnectionFailed(
                        f"{self._operation}: {type(exc).__name__} after {self.received} bytes"
                    ) from None
                attempt += 1
                self._sleep(wait)
                self._response = self._reopen(self.received)

    def close(self) -> None:
        self._response.close()
