"""The blob-store interface. Stores hold only ciphertext (and MACed ledger/chain heads).

Two stores implement it: the filesystem (embedded default) and S3-compatible object
storage. Adapters turn vendor errors into BlobStoreError / BlobNotFound.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar, runtime_checkable

T = TypeVar("T")

Buffer = bytes | bytearray | memoryview

# Keys are paths of safe segments; both stores apply the same rule, so a key that works
# on the filesystem works on S3 and the other way round.
_KEY = re.compile(r"^[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*$")
TEMP_SUFFIX = ".partial"  # reserved for the filesystem store's unfinished writes
# The largest piece a reader may ask get_range for: one largest stream segment with its
# tag (crypto/limits.py MAX_SEGMENT_SIZE), so memory per read stays bounded.
MAX_PIECE_BYTES = 64 * 1024 * 1024 + 16


def check_piece_bytes(piece_bytes: int | None, default: int) -> int:
    if piece_bytes is None:
        return default
    if not 0 < piece_bytes <= MAX_PIECE_BYTES:
        raise ValueError(f"piece_bytes must be in 1..{MAX_PIECE_BYTES}")
    return piece_bytes


def is_valid_key(key: str) -> bool:
    """The key rule both stores share: `/`-separated segments of [A-Za-z0-9_.=-], no
    empty, `.` or `..` segment, and no `.partial` ending (reserved for temp files)."""
    return (
        bool(_KEY.match(key))
        and not any(part in (".", "..") for part in key.split("/"))
        and not key.endswith(TEMP_SUFFIX)
    )


class BlobStoreError(Exception):
    """The store failed; adapters turn vendor errors into this. Messages name no key."""


class BlobNotFound(BlobStoreError):
    """No object under that key."""


@dataclass(frozen=True)
class IncompleteUpload:
    """A streamed write that never finished (crashed process, dropped client): a temp
    file or an S3 multipart upload. `handle` is what abort_incomplete needs."""

    key: str
    handle: str
    started_at: datetime


class BlobStore(Protocol):
    name: str

    @property
    def location(self) -> str:
        """Where this store keeps its objects, one canonical string (a directory, or an
        S3 endpoint, bucket and prefix): the shred ledger's watermark is kept per ledger."""

    async def put(self, key: str, data: bytes) -> None:
        """Store a small object whole; visible under `key` only once complete."""

    async def put_retained(self, key: str, data: bytes, retain_until: datetime) -> bool:
        """Store a small object that must not be deleted or replaced before
        `retain_until` (S3 Object Lock in compliance mode, where the bucket has Object
        Lock enabled). Returns whether the store enforces that; if not, it is a put."""

    async def retention_enforced(self) -> bool:
        """Whether `put_retained` objects cannot be deleted before their time (S3 with
        Object Lock): the shred ledger is then prevented from being cut, not only
        detected."""

    async def get(self, key: str) -> bytes:
        """A small object whole."""

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes | bytearray]) -> int:
        """Store an object of any size from chunks of any sizes, in bounded memory, and
        return its size. The object appears under `key` only when complete; if the
        iterator raises or the task is cancelled, nothing appears under `key` and the
        partial data is removed (temp file deleted, multipart upload aborted)."""

    def get_range(
        self, key: str, start: int = 0, end: int | None = None, *, piece_bytes: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Stream bytes start..end (inclusive; None = to the end) in bounded memory.
        `piece_bytes`: hand them out in pieces of exactly that size (the last may be
        shorter), e.g. one stream segment's ciphertext each, so the reader regroups
        nothing; at most MAX_PIECE_BYTES; None: the store's own read size."""

    async def size(self, key: str) -> int:
        """The object's size in bytes; BlobNotFound if absent."""

    async def delete(self, key: str) -> None:
        """Remove the object; absent is fine."""

    async def list_keys(
        self, prefix: str, *, start_after: str = "", limit: int | None = None
    ) -> list[str]:
        """Keys of complete objects under `prefix`, sorted; only those after
        `start_after` (as S3's StartAfter), and at most `limit` of them. Listing on from a
        known key costs one request however many objects come before it."""

    async def list_incomplete(self, older_than: datetime) -> list[IncompleteUpload]:
        """Streamed writes started before `older_than` that never completed."""

    async def abort_incomplete(self, upload: IncompleteUpload) -> None:
        """Remove one incomplete write's partial data."""

    async def ping(self) -> bool:
        """True when the store answers."""

    async def close(self) -> None:
        """Release connections and threads."""


@runtime_checkable
class ReadsCachedInline(Protocol):
    """A store that can read a short range from memory on the calling thread (the
    filesystem store, from the page cache): a seek then opens its one or two segments
    straight from the store's read buffer, without a copy of them (issue 19, sixth
    round)."""

    def with_cached_range(
        self, key: str, start: int, end: int, use: Callable[[memoryview], T]
    ) -> T | None:
        """`use` applied to bytes start..end (inclusive), at most INLINE_READ_MAX_BYTES,
        in a buffer valid only during the call (`use` must not keep it); None, without
        calling `use`, when they are not all in memory now or the blob ends before
        `end` (the caller then reads them the ordinary way). BlobNotFound as get_range."""


@runtime_checkable
class ReadsOnAThread(Protocol):
    """A store that reads a long range on a thread of the read's own (both stores do:
    blobs/thread_reads.py), and can apply a function to every piece on that thread
    before handing it out: a download opens its segments there (issue 19, fifth round
    for S3, sixth for the filesystem), so the thread that reads also decrypts and the
    event loop receives plaintext only."""

    def get_range_mapped(
        self,
        key: str,
        start: int,
        end: int | None,
        *,
        piece_bytes: int,
        each: Callable[[bytes], bytes],
    ) -> AsyncGenerator[bytes, None]:
        """Bytes start..end (inclusive; None = to the end) in pieces of exactly
        `piece_bytes` (the last may be shorter), each replaced by `each(piece)`, called
        on the reading thread in order; what `each` raises ends the read and is raised
        to the consumer. Closing the generator stops the thread after its current piece."""


@runtime_checkable
class WritesOnAThread(Protocol):
    """A store that writes a stream on a thread of the write's own (the filesystem),
    and can make each piece there before writing it: an upload seals its segments
    there (issue 19, sixth round), so the thread that writes also seals, and a segment
    takes one hand-off from the event loop instead of two."""

    async def put_stream_made(self, key: str, makers: AsyncIterable[Callable[[], Buffer]]) -> int:
        """put_stream of the bytes each maker returns, the makers called in order on
        the writing thread; what a maker raises fails the write as the iterator's
        failure would (nothing appears under `key`)."""
