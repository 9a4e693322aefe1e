"""Limits on a request's head (request line and header fields), enforced while uvicorn
parses it, before anything is buffered without bound.

uvicorn's httptools protocol has no limit of its own: it keeps the URL and every header
until the head ends (a 10 MB header was served), and its h11 protocol answers a head
over `h11_max_incomplete_event_size` (16 KiB) with a plain-text 400. The vault runs
uvicorn with `LimitedHttpToolsProtocol` below instead: a request target over
MAX_REQUEST_TARGET_BYTES is 414, header fields over MAX_HEADER_BYTES or
MAX_HEADER_FIELDS are 431, and a request httptools cannot parse is 400. Each refusal is
handed to the app as a request of its own (EDGE_REFUSAL in its scope state), so the
access-log middleware answers it as problem+json with a request id and logs it like any
other request; the connection is closed after the answer.

Each answer's head (status line and header fields: uvicorn writes it on its own when the
app sends `http.response.start`) waits for the answer's first body write and leaves with
it in one system call (`_HeadJoinsBody`): a one-message answer (a seek's 64 KiB range)
wakes its client once instead of twice (issue 19, sixth round).

The protocol also offers the app three extensions in the scope's "extensions":
ABORT_CONNECTION resets this request's connection now, discarding whatever is still
queued for the client (a transfer cut by the clock, vault/http/transfers.py). uvicorn
itself only closes a connection whose app failed, which first waits until the client has
read the queued bytes: a client that stopped reading would get them whenever it resumed.
WAIT_WRITTEN waits until nothing is queued in the process for the connection any more:
uvicorn's `send` of an answer's last message returns once the bytes are handed to the
transport, which keeps what the kernel does not take yet (all of it, for a client that
stopped reading), so a transfer is over only once they have left the process.
BODY_MESSAGE_BYTES lets a request ask for its body in larger messages than uvicorn's:
uvicorn wakes the app for every ~64 KiB that arrives (its flow control's high-water
mark), and each message then costs the app its way through the middleware and the
upload's pipeline. An artefact upload asks for one segment's worth (1 MiB) per message
(issue 19, sixth round): a sixteenth of the wake-ups and per-message Python, with the
same bound on what the connection buffers (reading pauses once that much is waiting).
Bytes never wait longer than BODY_MESSAGE_WAIT_SECONDS for the rest of their message:
a slow client's body still reaches the app as it arrives, so the upload's idle limit
(vault/http/artefacts.py) sees a client that keeps sending as one that is not idle.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from contextlib import suppress
from typing import Any
from weakref import WeakSet, ref

from starlette.types import Scope
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

# The path and query as sent. nginx's default request-line buffer is 8 KiB; no vault
# route needs more (a subject reference is at most 200 characters, 2.4 KiB encoded).
MAX_REQUEST_TARGET_BYTES = 8 * 1024
# The sum over header fields of name and value lengths (what nginx's default 4 x 8 KiB
# buffers allow); the largest the vault reads is an Authorization key of 256 characters
# or an RFC 8187 X-Filename of about 3 KiB.
MAX_HEADER_BYTES = 32 * 1024
MAX_HEADER_FIELDS = 100
# What one head may hold in memory before it is refused, whatever is still unparsed:
# the two limits plus the framing (": ", CRLF per field, the request line's).
_MAX_HEAD_BYTES = MAX_REQUEST_TARGET_BYTES + MAX_HEADER_BYTES + 4 * MAX_HEADER_FIELDS + 64

# The method of a request refused before its request line was parsed.
_UNPARSED = "(invalid)"

EDGE_REFUSAL = "edge_refusal"  # scope["state"] key: the status the app must answer
ABORT_CONNECTION = "datavault.abort_connection"  # scope["extensions"] key: a callable
WAIT_WRITTEN = "datavault.wait_written"  # scope["extensions"] key: an async callable
BODY_MESSAGE_BYTES = "datavault.body_message_bytes"  # scope["extensions"] key: a callable
# The most a request may ask to receive per body message (and so what its connection
# buffers before reading pauses): the largest stream segment is 64 MiB, but a few
# segments' worth is all an upload needs to batch its work.
MAX_BODY_MESSAGE_BYTES = 4 * 1024 * 1024
# The longest a body byte waits for its message to fill before the app is woken with
# what has arrived: far below any idle limit, far above the milliseconds a megabyte
# takes on a fast connection.
BODY_MESSAGE_WAIT_SECONDS = 0.05
# How often WAIT_WRITTEN looks again while the transport holds less than its high-water
# mark (uvicorn's flow control signals only crossing that mark, not an empty buffer).
_WRITTEN_POLL_SECONDS = 0.005
# SO_LINGER on, timeout 0: close() resets the connection and drops the send buffer.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)
REFUSAL_DETAILS = {
    400: ("malformed-request", "the request is not valid HTTP/1.1"),
    414: ("uri-too-long", f"the request target is longer than {MAX_REQUEST_TARGET_BYTES} bytes"),
    431: (
        "headers-too-large",
        f"the header fields are larger than {MAX_HEADER_BYTES} bytes "
        f"or more than {MAX_HEADER_FIELDS}",
    ),
}


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._began_in_chunk = False
        self._head_bytes = 0
        self._header_bytes = 0
        self._header_fields = 0
        self._method = _UNPARSED
        self._refusal: int | None = None
        self._refusal_started = False
        # Every request of the connection still running (uvicorn's `self.cycle` is only
        # the newest parsed when requests pipeline): an abort marks them all gone.
        self._cycles: WeakSet[RequestResponseCycle] = WeakSet()
        # What the request whose body is being parsed asked for (BODY_MESSAGE_BYTES),
        # and the timer that wakes the app when a message's first bytes have waited
        # BODY_MESSAGE_WAIT_SECONDS.
        self._body_messages = _BodyMessages()
        self._body_wake: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # the answer is on its way; the rest of this request is dropped
        in_head_before = self._in_head
        self._began_in_chunk = False
        super().data_received(data)
        if self._refusal is None and in_head_before and self._in_head and not self._began_in_chunk:
            # The whole chunk was this head's (it was in its head before and after, and no
            # request began in between): bound what the head may hold, even while one
            # header's value is still arriving (httptools reports it only when whole). A
            # chunk in which a head began also holds the requests pipelined before it,
            # whose bytes are not this head's: the bound starts with the next chunk, so a
            # head may run past it by at most the one read in which it began (red team 15:
            # counted whole, a burst of small pipelined requests was refused 431).
            self._head_bytes += len(data)
            if self._head_bytes > _MAX_HEAD_BYTES:
                self._refusal = 431
        if self._refusal is not None:
            self._answer_refusal()

    def send_400_response(self, msg: str) -> None:
        """httptools could not parse the request: answered by the app like any refusal
        (problem+json, logged), unless there is no request to speak of yet."""
        if not self._has_request():
            super().send_400_response(msg)
            return
        self._refusal = self._refusal or 400  # data_received hands it to the app

    def on_message_begin(self) -> None:
        if self._refusal is not None:
            return  # a pipelined request after a refused one: never started
        super().on_message_begin()
        # ASGI types extension values as dicts; these are the vault's own callables.
        # One per request: a request pipelined behind this one asks for its own, and a
        # wake-up timer left from the request before must not stand for its first.
        self._body_messages = _BodyMessages()
        if self._body_wake is not None:
            self._body_wake.cancel()
            self._body_wake = None
        extensions: dict[str, Any] = {
            ABORT_CONNECTION: self._abort_connection,
            WAIT_WRITTEN: self._wait_written,
            BODY_MESSAGE_BYTES: self._body_messages.ask,
        }
        self.scope["extensions"] = extensions
        self._in_head = True
        self._began_in_chunk = True
        self._head_bytes = self._header_bytes = self._header_fields = 0
        self._method = _UNPARSED

    def on_url(self, url: bytes) -> None:
        if self._refusal is not None:
            return
        if self._method == _UNPARSED:
            self._method = self.parser.get_method().decode("ascii", "replace")
        super().on_url(url)
        if len(self.url) > MAX_REQUEST_TARGET_BYTES:
            self._refusal = 414

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refusal is not None:
            return
        self._header_fields += 1
        self._header_bytes += len(name) + len(value.rstrip(b" \t"))
        if self._header_bytes > MAX_HEADER_BYTES or self._header_fields > MAX_HEADER_FIELDS:
            self._refusal = 431
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._refusal is None:
            super().on_headers_complete()
            self.cycle.transport = _HeadJoinsBody(  # type: ignore[assignment]
                self.transport, self.cycle, self.loop
            )
            self._cycles.add(self.cycle)

    def on_body(self, body: bytes) -> None:
        if self._refusal is not None:
            return
        wanted = self._body_messages.size
        if wanted <= HIGH_WATER_LIMIT:
            super().on_body(body)
            return
        # As uvicorn's on_body, with the app woken (and reading paused) only once a
        # message of the size asked for is waiting; the body's end wakes it as ever
        # (on_message_complete), and so does a lost connection.
        cycle = self.cycle
        if cycle.response_complete or (self.parser.should_upgrade() and self._should_upgrade()):
            return
        # Kept as they came and joined once per message: growing uvicorn's bytearray to
        # a megabyte by `+=` reallocates and copies it several times over.
        messages = self._body_messages
        messages.pending.append(body)
        messages.pending_bytes += len(body)
        if messages.pending_bytes >= wanted:
            self._hand_over_body(cycle)
            self.flow.pause_reading()
        elif self._body_wake is None:
            wake = self.loop.call_later(BODY_MESSAGE_WAIT_SECONDS, self._wake_for_body, cycle)
            self._body_wake = wake

    def _hand_over_body(self, cycle: RequestResponseCycle) -> None:
        """Put what has arrived of the message into uvicorn's body and wake the app."""
        messages = self._body_messages
        if messages.pending:
            # As bytes, which uvicorn's receive() hands on without copying (`bytes(body)`
            # of a bytes object is that object): one copy per message where a bytearray
            # costs two. Its own on_body only ever appends to it (`+=`), which works on
            # bytes as well.
            joined = b"".join([cycle.body, *messages.pending] if cycle.body else messages.pending)
            cycle.body = joined  # type: ignore[assignment]
            messages.pending.clear()
            messages.pending_bytes = 0
        cycle.message_event.set()

    def _wake_for_body(self, cycle: RequestResponseCycle) -> None:
        """Hand the app what has arrived of its message so far (BODY_MESSAGE_WAIT_SECONDS)."""
        self._body_wake = None
        if not self._body_messages.pending or cycle is not self.cycle:
            return
        if cycle.body:
            # The app has not taken the last message yet (it is awake already): look
            # again later rather than copy that message into a bigger one.
            wake = self.loop.call_later(BODY_MESSAGE_WAIT_SECONDS, self._wake_for_body, cycle)
            self._body_wake = wake
            return
        self._hand_over_body(cycle)

    def on_message_complete(self) -> None:
        if self._refusal is None:
            if self._body_messages.pending:
                self._hand_over_body(self.cycle)
            super().on_message_complete()

    def _abort_connection(self) -> None:
        """Reset the connection: no byte still queued, here or in the kernel, is sent."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        self.transport.abort()
        # As connection_lost (which runs later) does for the newest request only: no
        # request of the connection (a seek cut before its status line went out, one
        # pipelined behind it) may then answer, or be answered 500, on the closed
        # transport.
        for cycle in list(self._cycles):
            cycle.disconnected = True

    def connection_lost(self, exc: Exception | None) -> None:
        # uvicorn marks only its newest request gone: one still running before it (a
        # request being answered while the next was parsed, one whose body broke) would
        # wait for a body or a drain that never comes, and outlive its client.
        for cycle in list(self._cycles):
            if not cycle.response_complete:
                cycle.disconnected = True
            cycle.message_event.set()
        super().connection_lost(exc)

    async def _wait_written(self) -> None:
        """Return once the transport holds nothing more for the client (the kernel has
        it, or the connection is gone)."""
        transport = self.transport
        while not transport.is_closing() and transport.get_write_buffer_size() > 0:
            if self.flow.write_paused:
                await self.flow.drain()  # set again by connection_lost too
            else:
                await asyncio.sleep(_WRITTEN_POLL_SECONDS)

    def _has_request(self) -> bool:
        """Whether a request began (uvicorn types its scope as always set; it is not)."""
        return getattr(self, "scope", None) is not None

    def _answer_refusal(self) -> None:
        """Run the app on a stand-in request that carries only the refusal: no target,
        and only the header fields that were within the limits (X-Forwarded-For among
        them, for the access log's client IP). A scope of its own: when the refusal is of
        a running request's body (a malformed chunk), that request's scope stays its own
        (its access-log row names its route)."""
        if not self._has_request() or self._refusal_started:
            return
        self._refusal_started = True
        previous = self.cycle
        answer_now = previous is None or previous.response_complete
        if not answer_now and previous.more_body:
            # The newest request's own body broke: it will never get the rest, and the
            # refusal answers in its place. Still queued behind an earlier request's
            # answer, it never starts: the refusal takes its place in the queue. Running,
            # its handler is told the client is gone (an answer it makes is not written)
            # and the refusal answers at once; one whose answer has begun cannot be
            # answered again: the connection is reset.
            queued = next((entry for entry in self.pipeline if entry[0] is previous), None)
            if queued is not None:
                self.pipeline.remove(queued)
            elif previous.response_started:
                self._abort_connection()
                return
            else:
                previous.disconnected = True
                previous.message_event.set()
                answer_now = True
        # Only what the connection and the head gave, never what the app added to a
        # running request's scope (its route, endpoint, path parameters: red team 16, the
        # refusal was logged under the upload's route, its subject reference in reach).
        running = self.scope
        self.scope = {
            "type": "http", "asgi": running["asgi"], "http_version": running["http_version"],
            "server": running["server"], "client": running["client"],
            "scheme": running["scheme"], "root_path": running["root_path"],
            "headers": running["headers"], "extensions": running.get("extensions", {}),
            "method": self._method, "path": "/", "raw_path": b"/", "query_string": b"",
            "state": {**self.app_state, EDGE_REFUSAL: self._refusal},
        }  # fmt: skip
        self.cycle = RequestResponseCycle(
            scope=self.scope, transport=self.transport, flow=self.flow, logger=self.logger,
            access_logger=self.access_logger, access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=_already_set(),
            expect_100_continue=False, keep_alive=False, on_response=self.on_response_complete,
        )  # fmt: skip
        self.cycle.more_body = False
        if answer_now:
            self._start_asgi_task(self.cycle, self.app)
        else:
            # Pipelined behind a request still being answered: after it, as uvicorn
            # queues any pipelined request.
            self.flow.pause_reading()
            self.pipeline.appendleft((self.cycle, self.app))


class _BodyMessages:
    """The body message size one request asked for (0: uvicorn's own)."""

    __slots__ = ("pending", "pending_bytes", "size")

    def __init__(self) -> None:
        self.size = 0
        # Body bytes received and not yet handed to the app (LimitedHttpToolsProtocol).
        self.pending: list[bytes] = []
        self.pending_bytes = 0

    def ask(self, size: int) -> None:
        self.size = max(0, min(size, MAX_BODY_MESSAGE_BYTES))


def ask_for_body_messages(scope: Scope, size: int) -> None:
    """Receive this request's body in messages of about `size` bytes (at least that
    much each, but the last; at most MAX_BODY_MESSAGE_BYTES is asked for) where the
    server offers it (LimitedHttpToolsProtocol); elsewhere (other servers, test
    transports) nothing changes."""
    ask = scope.get("extensions", {}).get(BODY_MESSAGE_BYTES)
    if ask is not None:
        ask(size)


def _already_set() -> asyncio.Event:
    """The stand-in request has no body: the app's receive() must not wait for one."""
    event = asyncio.Event()
    event.set()
    return event


# A first body piece up to this size is copied onto the held head (cheap); a longer one
# goes with it uncopied in one writev.
JOINED_BODY_BYTES = 16 * 1024


class _HeadJoinsBody:
    """The transport as one request's cycle sees it: the answer's head is held until the
    cycle's next write and both go out in one system call (joined if the piece is short,
    else one `writelines`: one writev, no copy). The
    head never waits past the event loop's current turn (a stream whose first piece is
    not ready by then sends it alone), nor past close(). A HEAD answer writes no body:
    its head is not held.

    It names its cycle by a weak reference: the cycle holds it as its transport, and a
    strong reference back made every request's cycle, scope, task and state a garbage
    cycle that only the collector freed (~30 objects a request; a young collection every
    ~600 requests, each a pause of 10-20 ms with every request in flight waiting).
    Without the cycle they go when the request ends (issue 19, seventh round)."""

    __slots__ = ("_cycle", "_head", "_head_seen", "_holds_head", "_loop", "_transport")

    def __init__(
        self,
        transport: asyncio.Transport,
        cycle: RequestResponseCycle,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._transport = transport
        # The protocol's loop, not asyncio.get_running_loop() per answer (on Python 3.11
        # each call is a getpid system call).
        self._loop = loop
        self._cycle = ref(cycle)
        self._holds_head = cycle.scope["method"] != "HEAD"
        self._head: bytes | None = None
        self._head_seen = False

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if len(data) <= JOINED_BODY_BYTES:
                # One buffer takes uvloop's fast path; several go through a write context
                # (measured: writelines of a record's answer cost more than it saved).
                self._transport.write(head + data)
            else:
                self._transport.writelines((head, data))
            return
        if not self._head_seen and self._response_started():
            # uvicorn's first write once the response started is its head (a "100
            # Continue" is written before that).
            self._head_seen = True
            if self._holds_head:
                self._head = data
                self._loop.call_soon(self._flush)
                return
        self._transport.write(data)

    def _response_started(self) -> bool:
        cycle = self._cycle()
        return cycle is not None and cycle.response_started

    def _flush(self) -> None:
        head, self._head = self._head, None
        if head is not None and not self._transport.is_closing():
            self._transport.write(head)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
