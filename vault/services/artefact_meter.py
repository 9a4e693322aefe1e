"""Counting, hashing and bounding an upload as it streams through."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import zlib
from collections.abc import AsyncIterable, AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from vault.errors import TooLarge

# Pieces queued for hashing at once. With two, the hashing thread starts on the next
# piece as soon as it finishes one, instead of idling until the event loop has seen the
# result and handed it more: on a busy loop that round trip (thread -> loop wake-up ->
# next submit -> thread wake-up) is a large share of a piece's time. Memory: this many
# pieces held for hashing, beyond the ones moving on downstream.
HASH_AHEAD: Final = 2


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
        """Expects pieces of about a segment (see prefetch). Hashing runs in a thread of
        this upload's own (hashlib and zlib release the GIL) while the pieces move on to
        the cipher and the store; one thread hashes them in order, at most HASH_AHEAD
        queued or in progress at a time."""
        loop = asyncio.get_running_loop()
        hashing: collections.deque[asyncio.Future[None]] = collections.deque()
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload-hash")
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                self.size += len(chunk)
                if self.size > self.max_bytes:
                    raise TooLarge(f"artefact is larger than {self.max_bytes} bytes")
                while len(hashing) >= HASH_AHEAD:
                    await hashing.popleft()
                hashing.append(loop.run_in_executor(worker, self._digest, chunk))
                yield chunk
            while hashing:
                await hashing.popleft()
        finally:
            # Every job queued has run (or fails) before the digest is read or the
            # pieces are released; the single worker runs them in order.
            if hashing:
                await asyncio.gather(*hashing, return_exceptions=True)
            worker.shutdown(wait=False)

    def _digest(self, chunk: bytes) -> None:
        self._sha256.update(chunk)
        self.crc32 = zlib.crc32(chunk, self.crc32)

    @property
    def sha256(self) -> str:
        """Valid once `through` has finished."""
        return self._sha256.hexdigest()
