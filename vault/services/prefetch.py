"""Read-ahead for streams: a producer task fills a small bounded queue while the consumer
works, so receiving the next piece overlaps hashing, encrypting and writing this one.

Memory stays bounded by `depth` pieces of about `piece_bytes` each. An error in the
producer (a client that went away) is raised in the consumer; a consumer that stops
early (too large, integrity failure) cancels the producer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable
from typing import Final

# 1 MiB pieces match the cipher's segment size; 4 in flight keep both cores busy on
# loopback without holding more than a few MiB per transfer.
PIECE_BYTES: Final = 1024 * 1024
DEPTH: Final = 4

_END: Final = object()


async def prefetched(
    chunks: AsyncIterable[bytes], piece_bytes: int = PIECE_BYTES, depth: int = DEPTH
) -> AsyncGenerator[bytes, None]:
    """Yield the stream's bytes in pieces of exactly `piece_bytes` (the last one shorter).

    Exact pieces line up with the cipher's segments, so it cuts them as zero-copy views
    instead of copying almost every segment to stitch it together. A piece is assembled
    with one copy (a join of the chunks and of views of the chunk that straddles its
    end); a chunk that is already whole pieces is passed on without any copy."""
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=depth)

    async def produce() -> None:
        try:
            # Chunks (or views of the unused tail of one) held for the next piece; always
            # fewer than piece_bytes bytes between iterations.
            parts: list[bytes | memoryview] = []
            held = 0
            async for chunk in chunks:
                if not chunk:
                    continue
                # Only immutable bytes are referenced across a wait: a producer may
                # reuse a mutable buffer once asked for the next chunk.
                data = chunk if type(chunk) is bytes else bytes(chunk)
                if not parts and len(data) % piece_bytes == 0:
                    await queue.put(data)
                    continue
                view = memoryview(data)
                while held + len(view) >= piece_bytes:
                    take = piece_bytes - held
                    parts.append(view[:take])
                    view = view[take:]
                    piece = b"".join(parts)
                    parts.clear()
                    held = 0
                    await queue.put(piece)
                if view:
                    parts.append(view)
                    held += len(view)
            if parts:
                await queue.put(b"".join(parts))
            await queue.put(_END)
        except Exception as exc:
            await queue.put(exc)

    producer = asyncio.create_task(produce())
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, Exception):
                raise item
            assert isinstance(item, bytes)
            yield item
    finally:
        producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)
