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
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=depth)

    async def produce() -> None:
        try:
            pending = bytearray()
            async for chunk in chunks:
                if not pending and len(chunk) >= piece_bytes:
                    await queue.put(chunk)
                    continue
                pending += chunk
                if len(pending) >= piece_bytes:
                    await queue.put(bytes(pending))
                    pending = bytearray()
            if pending:
                await queue.put(bytes(pending))
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
            assert isinstance(item, bytes | bytearray)
            yield bytes(item)
    finally:
        producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)
