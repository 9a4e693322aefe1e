"""The blob-store interface. Stores hold only ciphertext (and MACed ledger/chain heads).

Two stores implement it: the filesystem (embedded default) and S3-compatible object
storage. Adapters turn vendor errors into BlobStoreError / BlobNotFound.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


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

    async def put(self, key: str, data: bytes) -> None:
        """Store a small object whole; visible under `key` only once complete."""

    async def get(self, key: str) -> bytes:
        """A small object whole."""

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Store an object of any size from chunks of any sizes, in bounded memory, and
        return its size. The object appears under `key` only when complete; if the
        iterator raises or the task is cancelled, nothing appears under `key` and the
        partial data is removed (temp file deleted, multipart upload aborted)."""

    def get_range(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes start..end (inclusive; None = to the end) in bounded memory."""

    async def size(self, key: str) -> int:
        """The object's size in bytes; BlobNotFound if absent."""

    async def delete(self, key: str) -> None:
        """Remove the object; absent is fine."""

    async def list_keys(self, prefix: str) -> list[str]:
        """Keys of complete objects under `prefix`, sorted."""

    async def list_incomplete(self, older_than: datetime) -> list[IncompleteUpload]:
        """Streamed writes started before `older_than` that never completed."""

    async def abort_incomplete(self, upload: IncompleteUpload) -> None:
        """Remove one incomplete write's partial data."""

    async def ping(self) -> bool:
        """True when the store answers."""
