"""Counting, hashing and bounding an upload as it streams through."""

from __future__ import annotations

import asyncio
import hashlib
import zlib
from collections.abc import AsyncIterable, AsyncIterator

from vault.errors import TooLarge


class UploadMeter:
    """Passes chunks through while computing the plaintext's size, SHA-256 and CRC-32
    (the export's ZIP entries need the CRC), and stops an upload that grows past the
    limit before any more of it is stored."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._sha256 = hashlib.sha256()
        self.crc32 = 0

    async def through(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """Expects pieces of about a segment (see prefetch). Hashing one runs in a thread
        (hashlib and zlib release the GIL) while the piece moves on to the cipher and
        the store; at most one piece is being hashed at a time, in order."""
        hashing: asyncio.Future[None] | None = None
        loop = asyncio.get_running_loop()
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                self.size += len(chunk)
                if self.size > self.max_bytes:
                    raise TooLarge(f"artefact is larger than {self.max_bytes} bytes")
                if hashing is not None:
                    await hashing
                hashing = loop.run_in_executor(None, self._digest, chunk)
                yield chunk
            if hashing is not None:
                await hashing
                hashing = None
        finally:
            if hashing is not None:
                await asyncio.gather(hashing, return_exceptions=True)

    def _digest(self, chunk: bytes) -> None:
        self._sha256.update(chunk)
        self.crc32 = zlib.crc32(chunk, self.crc32)

    @property
    def sha256(self) -> str:
        """Valid once `through` has finished."""
        return self._sha256.hexdigest()
