"""One S3 GET streamed by a thread of its own (issue 19, goal 3).

A read handed each piece to a worker thread of its own (`asyncio.to_thread(body.read)`):
one thread hop and one wait on the pool per piece, and no reading while the event loop
decrypted and sent the piece before. Here one thread per read sends the GET and reads
the body piece after piece, ahead of the piece the event loop is handing on
(thread_reads.py: the bound on memory, the stop, `each`). A consumer that stops makes
the thread close the body, which closes the connection (a half-read body is not given
back to the pool).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from vault.blobs.thread_reads import READ_AHEAD_PIECES, read_on_a_thread

__all__ = ["READ_AHEAD_PIECES", "THREAD_NAME", "read_in_thread"]

THREAD_NAME: Final = "blob-s3-get"


def read_in_thread(
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

    def body_pieces() -> Iterator[bytes]:
        try:
            response = get_object(**request)
            body = response["Body"]
            try:
                check(response)
                # urllib3 reads until it has that many bytes or the body ends.
                while piece := body.read(read_size):
                    yield piece
            finally:
                body.close()
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) != "InvalidRange":
                raise failure(exc) from None
            # The range starts at or past the end: no bytes.
        except BotoCoreError as exc:
            raise failure(exc) from None

    return read_on_a_thread(body_pieces, thread_name=THREAD_NAME, read_ahead=read_ahead, each=each)
