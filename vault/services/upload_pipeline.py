"""An upload's plaintext on its way to the blob store (issue 19: the upload cost 2.4-3.3
times the CPU per GiB of a bare server streaming to a file).

Pieces of exactly one segment arrive from the read-ahead (services/prefetch.py). Each is
counted against the limit on the event loop, then hashed (SHA-256, CRC-32) and sealed
(crypto.stream.StreamSealer) in one call on a thread of this upload's own: all three
release the GIL, so they run beside the event loop, which goes on receiving, and the
piece is still in the CPU's cache for the second and third pass over it. One thread
keeps the pieces in order; at most SEAL_AHEAD are queued or being sealed, so memory
stays bounded by a few segments.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterable, AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from crypto.stream import StreamSealer
from vault.services.artefact_meter import UploadMeter

# With two, the thread starts on the next piece as soon as it finishes one instead of
# idling until the event loop has seen the result and handed it more.
SEAL_AHEAD: Final = 2


async def sealed_upload(
    pieces: AsyncIterable[bytes], meter: UploadMeter, sealer: StreamSealer
) -> AsyncIterator[bytes]:
    """The stream's header, then its sealed segments in order. `pieces`: the plaintext in
    pieces of exactly the sealer's segment size, the last one shorter (or none at all
    for the empty object). Raises TooLarge (from the meter) before a piece past the
    limit is sealed."""
    loop = asyncio.get_running_loop()
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload-seal")
    queued: collections.deque[asyncio.Future[bytes]] = collections.deque()

    def seal(piece: bytes, last: bool) -> bytes:
        meter.digest(piece)
        return sealer.seal(piece, last=last)

    try:
        yield sealer.header
        # Which piece is the last is known only once the stream ends: one is held back.
        held: bytes | None = None
        async for piece in pieces:
            if not piece:
                continue
            meter.count(piece)
            if held is not None:
                queued.append(loop.run_in_executor(worker, seal, held, False))
                while len(queued) >= SEAL_AHEAD:
                    yield await queued.popleft()
            held = piece
        queued.append(loop.run_in_executor(worker, seal, held or b"", True))
        while queued:
            yield await queued.popleft()
    finally:
        # Every piece handed out has been sealed (or failed) before the meter is read
        # or the pieces released; the single worker runs them in order.
        if queued:
            await asyncio.gather(*queued, return_exceptions=True)
        worker.shutdown(wait=False)
