"""Counting, hashing and bounding an upload as it streams through."""

from __future__ import annotations

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
        async for chunk in chunks:
            if not chunk:
                continue
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise TooLarge(f"artefact is larger than {self.max_bytes} bytes")
            self._sha256.update(chunk)
            self.crc32 = zlib.crc32(chunk, self.crc32)
            yield chunk

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()
