"""A download's plaintext on its way to the client (issue 19): its ciphertext read in
pieces of exactly one segment's ciphertext, so nothing is regrouped or copied to be
opened, and opened where it costs the event loop least.

A read of one or two segments (a player seeking: 64 KiB straddles two segments about one
time in sixteen) opens them on the event loop (from the filesystem store's read buffer
itself when its bytes are in the page cache: no copy of the megabyte read, issue 19,
sixth round): a thread of its own, started for the
request, cost more than it saved (issue 19, second round: on a loaded machine those reads
were the slowest percent). A longer read is opened off the loop:

- where the store reads on a thread of the read's own (both stores: blobs/base.py
  ReadsOnAThread), that thread opens each segment as it reads it, and the loop receives
  plaintext: one hand-off per segment (issue 19, fifth round for S3, sixth for the
  filesystem). Before, each segment crossed from the reading thread (S3) or a pool
  thread (the filesystem) to the loop, through a read-ahead task, to an opening thread
  and back; those hops were most of what the loop spent on a download beside sending;
- otherwise (a store without such a thread) it is read ahead (services/prefetch.py)
  and its segments are opened on a thread of the download's own (AES-GCM releases the
  GIL), a few ahead of the one the event loop is sending (crypto.stream.decrypt_range's
  `open_in`).

The checks are crypto.stream.RangeOpener's either way: every planned segment, each the
length and the authentic segment it must be, and no more.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from typing import cast

from crypto.context import KeyContext
from crypto.limits import GCM_TAG_SIZE
from crypto.secrets import SecretBytes
from crypto.stream import RangeOpener, RangePlan, decrypt_range
from vault.blobs.base import BlobStore, ReadsCachedInline, ReadsOnAThread
from vault.services.prefetch import prefetched

# Reads of at most this many segments open them on the event loop, without read-ahead.
ON_LOOP_SEGMENTS = 2


async def planned_plaintext(
    blobs: BlobStore,
    key: str,
    plan: RangePlan,
    data_key: SecretBytes,
    context: KeyContext,
    header_bytes: bytes,
) -> AsyncGenerator[bytes, None]:
    """The plaintext of `plan`'s range of the blob under `key`, checked segment by
    segment (IntegrityError for anything that is not the planned segments)."""
    piece = plan.segment_size + GCM_TAG_SIZE
    start, end = plan.ciphertext_start, plan.ciphertext_end
    if plan.last_segment - plan.first_segment < ON_LOOP_SEGMENTS:
        # blobs.base.ReadsCachedInline, looked up rather than isinstance'd: a check
        # against a runtime Protocol was 1.6 % of a seek's samples.
        if getattr(blobs, "with_cached_range", None) is not None:
            # Opened straight from the store's read buffer, every planned segment
            # before the first piece is handed on (the buffer is the next read's).
            opener = RangeOpener(data_key, context, header_bytes, plan)
            parts = cast(ReadsCachedInline, blobs).with_cached_range(
                key, start, end, functools.partial(_open_all, opener, piece)
            )
            if parts is not None:
                for plaintext in parts:
                    yield plaintext
                return
        async with (
            aclosing(blobs.get_range(key, start, end, piece_bytes=piece)) as ranged,
            aclosing(decrypt_range(data_key, context, header_bytes, ranged, plan)) as out,
        ):
            async for plaintext in out:
                yield plaintext
        return
    if isinstance(blobs, ReadsOnAThread):
        opener = RangeOpener(data_key, context, header_bytes, plan)
        opened = blobs.get_range_mapped(key, start, end, piece_bytes=piece, each=opener.open_next)
        async with aclosing(opened) as out:
            async for plaintext in out:
                yield plaintext
        # The reading thread has returned from its last `open_next` before the end of
        # the read was handed on.
        opener.finish()
        return
    loop = asyncio.get_running_loop()
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="download-open")

    def open_in(job: Callable[[], bytes]) -> Awaitable[bytes]:
        return loop.run_in_executor(worker, job)

    try:
        ranged = prefetched(blobs.get_range(key, start, end, piece_bytes=piece), piece_bytes=piece)
        async with (
            aclosing(ranged) as segments,
            aclosing(
                decrypt_range(data_key, context, header_bytes, segments, plan, open_in)
            ) as out,
        ):
            async for plaintext in out:
                yield plaintext
    finally:
        worker.shutdown(wait=False)


def _open_all(opener: RangeOpener, piece: int, ciphertext: memoryview) -> list[bytes]:
    """Each planned segment's part of the range, opened from `ciphertext` (the planned
    segments' bytes, `piece` each but the blob's last); IntegrityError as RangeOpener."""
    parts = [
        opener.open_next(ciphertext[at : at + piece]) for at in range(0, len(ciphertext), piece)
    ]
    opener.finish()
    return parts
