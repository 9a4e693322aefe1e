"""One S3 GET streamed by a thread of its own (issue 19, goal 3).

A read handed each piece to a worker thread of its own (`asyncio.to_thread(body.read)`):
one thread hop and one wait on the pool per piece, and no reading while the event loop
decrypted and sent the piece before. Here one thread per read sends the GET and reads
the body piece after piece, `READ_AHEAD_PIECES` ahead of the piece the event loop is
handing on, so the socket is read while the loop works.

Memory stays bounded: the thread takes a slot before it reads a piece and the consumer
gives it back once it has taken that piece, so at most READ_AHEAD_PIECES pieces are
read and not yet taken. A consumer that stops (client gone, transfer cut, integrity
failure) tells the thread to stop: it ends after the piece it is reading, if any, and
closes the body, which closes the connection (a half-read body is not given back to
the pool).

A reader may give `each`, a function the thread applies to every piece it has read
before handing it on (a download opens its segments there, vault/services/
download_pipeline.py): reading and opening on one thread, the event loop receives
plaintext it only has to send, one hand-off per piece. What `each` raises ends the read
as a vendor error would, and the consumer raises it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

# Pieces read (or being read) and not yet taken by the consumer. Two keep the socket
# busy while the loop decrypts and sends one piece; with 1 MiB pieces a read holds at
# most 2 MiB of its own beside the piece its consumer holds.
READ_AHEAD_PIECES: Final = 2
THREAD_NAME: Final = "blob-s3-get"

_END: Final = object()


class _Stop(Exception):
    """The consumer went away: the thread stops reading."""


async def read_in_thread(
    get_object: Callable[..., Any],
    request: dict[str, Any],
    read_size: int,
    failure: Callable[[Exception], Exception],
    check: Callable[[dict[str, Any]], None],
    *,
    read_ahead: int = READ_AHEAD_PIECES,
    each: Callable[[bytes], bytes] | None = None,
) -> AsyncGenerator[bytes, None]:
    """The body of `get_object(**request)` in pieces of `read_size` bytes (the last may
    be shorter), read by a thread of its own, each passed through `each` on that thread
    when given. `check(response)` runs on the thread before the body is read and may
    raise. Vendor errors become `failure(exc)`; an `InvalidRange` (a range that starts
    past the end) is an empty body."""
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
            response = get_object(**request)
            body = response["Body"]
            try:
                check(response)
                while True:
                    # urllib3 reads until it has that many bytes or the body ends.
                    piece = body.read(read_size)
                    if not piece:
                        break
                    hand_on(piece if each is None else each(piece))
                    take_slot()
            finally:
                body.close()
            hand_on(_END)
        except _Stop:
            pass
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) == "InvalidRange":
                hand_on(_END)  # the range starts at or past the end: no bytes
            else:
                hand_on(_replaced(failure(exc), exc))
        except BotoCoreError as exc:
            hand_on(_replaced(failure(exc), exc))
        except Exception as exc:
            hand_on(exc)

    reader = threading.Thread(target=run, name=THREAD_NAME, daemon=True)
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


def _replaced(error: Exception, vendor: Exception) -> Exception:
    """`error` as `raise error from None` inside the vendor's `except` leaves it: the
    vendor's exception (whose message can carry the request URL) is its context, kept
    out of tracebacks."""
    error.__context__ = vendor
    error.__suppress_context__ = True
    return error
