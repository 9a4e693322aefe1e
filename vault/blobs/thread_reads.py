"""A long read done by a thread of the read's own, a few pieces ahead of its consumer
(issue 19). Both stores read downloads this way: S3 (s3_reader.py: one GET whose body
the thread reads) and the filesystem (filesystem.py: the file read piece by piece).

One thread per read instead of a trip to a pool per piece: the thread goes from one
piece to the next while the event loop sends the one before, and a reader may give
`each`, a function the thread applies to every piece before handing it on (a download
opens its segments there, vault/services/download_pipeline.py): reading and opening on
one thread, the loop receives plaintext it only has to send, one hand-off per piece.

Memory stays bounded: the thread takes a slot before it reads a piece and the consumer
gives it back once it has taken that piece, so at most `read_ahead` pieces are read and
not yet taken. A consumer that stops (client gone, transfer cut, integrity failure)
tells the thread to stop: it ends after the piece it is reading, if any, and closes the
piece iterator (which releases what it holds: a connection, a file). What the iterator
or `each` raises ends the read and is raised to the consumer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Final

# Pieces read (or being read) and not yet taken by the consumer. Two keep the store busy
# while the loop sends one piece; with 1 MiB pieces a read holds at most 2 MiB of its
# own beside the piece its consumer holds.
READ_AHEAD_PIECES: Final = 2

_END: Final = object()


class _Stop(Exception):
    """The consumer went away: the thread stops reading."""


async def read_on_a_thread(
    pieces: Callable[[], Iterator[bytes]],
    *,
    thread_name: str,
    read_ahead: int = READ_AHEAD_PIECES,
    each: Callable[[bytes], bytes] | None = None,
) -> AsyncGenerator[bytes, None]:
    """What the iterator `pieces()` yields, created and run on a thread of its own (it
    does its blocking I/O there), each piece passed through `each` on that thread when
    given."""
    loop = asyncio.get_running_loop()
    arrived: asyncio.Queue[object] = asyncio.Queue()
    slots = threading.Semaphore(read_ahead)
    stopping = threading.Event()

    def hand_on(item: object) -> None:
        # The loop may be closing when the consumer was dropped without being closed.
        if not loop.is_closed():
            loop.call_soon_threadsafe(arrived.put_nowait, item)

    def take_slot() -> None:
        slots.acquire()
        if stopping.is_set():
            raise _Stop

    def run() -> None:
        try:
            take_slot()
            iterator = pieces()
            try:
                for piece in iterator:
                    hand_on(piece if each is None else each(piece))
                    take_slot()
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
            hand_on(_END)
        except _Stop:
            pass
        except Exception as exc:
            hand_on(exc)

    reader = threading.Thread(target=run, name=thread_name, daemon=True)
    reader.start()
    try:
        while True:
            item = await arrived.get()
            if item is _END:
                return
            if isinstance(item, Exception):
                raise item
            assert isinstance(item, bytes)
            slots.release()
            yield item
    finally:
        # Wakes a thread waiting for a slot; one reading a piece stops after it.
        stopping.set()
        slots.release()
