"""A download's ciphertext on its way to the client (issue 19): read in pieces of exactly
one segment's ciphertext, so nothing is regrouped or copied to be opened, and opened
where it costs the event loop least.

A read of one or two segments (a player seeking: 64 KiB straddles two segments about one
time in sixteen) opens them on the event loop: a thread of its own, started for the
request, cost more than it saved (issue 19, second round: on a loaded machine those reads
were the slowest percent). A longer read is read ahead (services/prefetch.py) and its
segments are opened on a thread of the download's own (AES-GCM releases the GIL), a few
ahead of the one the event loop is sending (crypto.stream.decrypt_range's `open_in`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing, asynccontextmanager

from crypto.limits import GCM_TAG_SIZE
from crypto.stream import RangePlan
from vault.blobs.base import BlobStore
from vault.services.prefetch import prefetched

OpenIn = Callable[[Callable[[], bytes]], Awaitable[bytes]]

# Reads of at most this many segments open them on the event loop, without read-ahead.
ON_LOOP_SEGMENTS = 2


@asynccontextmanager
async def planned_segments(
    blobs: BlobStore, key: str, plan: RangePlan
) -> AsyncIterator[tuple[AsyncIterator[bytes], OpenIn | None]]:
    """The planned segments' ciphertext, one segment per piece, and where to open them
    (None: on the event loop)."""
    piece = plan.segment_size + GCM_TAG_SIZE
    ranged = blobs.get_range(key, plan.ciphertext_start, plan.ciphertext_end, piece_bytes=piece)
    if plan.last_segment - plan.first_segment < ON_LOOP_SEGMENTS:
        async with aclosing(ranged) as segments:
            yield segments, None
        return
    loop = asyncio.get_running_loop()
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="download-open")

    def open_in(job: Callable[[], bytes]) -> Awaitable[bytes]:
        return loop.run_in_executor(worker, job)

    try:
        async with aclosing(prefetched(ranged, piece_bytes=piece)) as segments:
            yield segments, open_in
    finally:
        worker.shutdown(wait=False)
