"""An upload's plaintext on its way to the blob store (issue 19: the upload cost 2.4-3.3
times the CPU per GiB of a bare server streaming to a file).

The body's chunks (about a segment each: the upload asks the server for body messages
of that size, vault/http/edge_limits.py BODY_MESSAGE_BYTES) are counted against the
limit on the event loop and cut into segments of exactly the sealer's segment size,
each a list of views of the chunks it spans: nothing is copied to be regrouped (issue
19, sixth round: joining the pieces was a tenth of the event loop's samples). Each
segment is hashed (SHA-256, CRC-32) part by part and sealed (crypto.stream.StreamSealer.
seal_parts, which encrypts the parts straight into the sealed segment) in one call on
one thread: the filesystem store's writing thread, which then writes it (one hand-off
per segment), or a thread of this upload's own for other stores. All three release the
GIL, so they run beside the event loop, which goes on receiving, and each part is still
in the CPU's cache for the second and third pass over it. One thread keeps the segments
in order; at most a few are queued (the store's WRITES_AHEAD, or SEAL_AHEAD here), and
one more is held back until the body shows whether it is the last, so memory stays
bounded by a few segments.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from crypto.stream import StreamSealer
from vault.services.artefact_meter import UploadMeter

# With two, the thread starts on the next segment as soon as it finishes one instead of
# idling until the event loop has seen the result and handed it more.
SEAL_AHEAD: Final = 2

Parts = list[bytes | memoryview]


async def sealing_jobs(
    chunks: AsyncIterable[bytes], meter: UploadMeter, sealer: StreamSealer
) -> AsyncIterator[Callable[[], bytes | bytearray]]:
    """What makes the stream, in order: the header, then a call per segment that hashes
    and seals it, to be run in order on one thread (a store's writing thread,
    blobs/base.py WritesOnAThread, or sealed_upload's). `chunks`: the plaintext in
    chunks of any size. Raises TooLarge (from the meter) before a chunk past the limit
    is handed on."""
    segment_size = sealer.segment_size

    def header() -> bytes:
        return sealer.header

    def seal(parts: Parts, last: bool) -> bytes | bytearray:
        for part in parts:
            meter.digest(part)
        return sealer.seal_parts(parts, last=last)

    yield header
    # Which segment is the last is known only once the body ends: one whole segment is
    # held back, and the next one's parts gather (always < segment_size bytes).
    held: Parts | None = None
    parts: Parts = []
    gathered = 0
    async for chunk in chunks:
        if not chunk:
            continue
        meter.count(chunk)
        # Only immutable bytes are referenced across a wait: a producer may reuse a
        # mutable buffer once asked for the next chunk.
        view = memoryview(chunk if type(chunk) is bytes else bytes(chunk))
        while gathered + len(view) >= segment_size:
            take = segment_size - gathered
            parts.append(view[:take])
            view = view[take:]
            if held is not None:
                yield functools.partial(seal, held, False)
            held, parts, gathered = parts, [], 0
        if view:
            parts.append(view)
            gathered += len(view)
    if held is not None and parts:
        yield functools.partial(seal, held, False)
        held = None
    yield functools.partial(seal, held if held is not None else parts or [b""], True)


async def sealed_upload(
    chunks: AsyncIterable[bytes], meter: UploadMeter, sealer: StreamSealer
) -> AsyncIterator[bytes | bytearray]:
    """The stream's header, then its sealed segments in order, sealed on a thread of
    this upload's own (for a store that does not seal on its writing thread)."""
    loop = asyncio.get_running_loop()
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload-seal")
    queued: collections.deque[asyncio.Future[bytes | bytearray]] = collections.deque()
    try:
        async for job in sealing_jobs(chunks, meter, sealer):
            queued.append(loop.run_in_executor(worker, job))
            while len(queued) >= SEAL_AHEAD:
                yield await queued.popleft()
        while queued:
            yield await queued.popleft()
    finally:
        # Every segment handed out has been sealed (or failed) before the meter is read
        # or the chunks released; the single worker runs them in order.
        if queued:
            await asyncio.gather(*queued, return_exceptions=True)
        worker.shutdown(wait=False)
