"""An answer's head leaves with its body in one write (vault/http/edge_limits.py
`_HeadJoinsBody`, issue 19 sixth round): a seek's 64 KiB answer wakes its client once.
The real protocol parses real requests; a stand-in transport records each write, so the
test sees what the kernel would be handed and in how many calls."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from vault.http.edge_limits import LimitedHttpToolsProtocol

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class _Transport:
    """Records every call that hands bytes on: one entry per call, its pieces joined."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.calls.append(bytes(data))

    def writelines(self, pieces: Any) -> None:
        self.calls.append(b"".join(bytes(piece) for piece in pieces))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _serve(app: App, request: bytes, wait: float = 0.05) -> list[bytes]:
    """The writes the protocol made answering `request` with `app`."""

    async def run() -> list[bytes]:
        config = Config(app=app, http=LimitedHttpToolsProtocol, lifespan="off", log_level="error")
        protocol = LimitedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
        transport = _Transport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(request)
        await asyncio.sleep(wait)
        protocol.connection_lost(None)
        return transport.calls

    return asyncio.run(run())


def _one_message(body: bytes, status: int = 206) -> App:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


GET = b"GET /x HTTP/1.1\r\nHost: vault\r\n\r\n"


def test_a_one_message_answer_is_one_write_head_first() -> None:
    body = bytes(range(256)) * 256  # 64 KiB, a seek's range
    calls = _serve(_one_message(body), GET)
    assert len(calls) == 1
    head, _, rest = calls[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 206 ")
    assert b"content-length: 65536" in head.lower()
    assert rest == body


def test_an_empty_body_still_sends_its_head() -> None:
    calls = _serve(_one_message(b"", status=204), GET)
    assert len(calls) == 1
    assert calls[0].startswith(b"HTTP/1.1 204 ")


def test_a_head_request_sends_its_head_at_once_without_waiting_for_a_body() -> None:
    calls = _serve(_one_message(b"twelve bytes"), b"HEAD /x HTTP/1.1\r\nHost: vault\r\n\r\n")
    assert len(calls) == 1
    assert calls[0].startswith(b"HTTP/1.1 206 ")
    assert calls[0].endswith(b"\r\n\r\n")  # the head alone: no body for HEAD


def test_a_stream_whose_first_piece_is_late_gets_its_head_first() -> None:
    """The head waits at most the event loop's current turn: a client is told the status
    while the first piece is still being made."""
    seen_before_body: list[list[bytes]] = []
    transport_calls: list[list[bytes]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.02)  # the first piece takes a while
        seen_before_body.append(list(transport_calls[0]))
        await send({"type": "http.response.body", "body": b"piece", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def run() -> list[bytes]:
        config = Config(app=app, http=LimitedHttpToolsProtocol, lifespan="off", log_level="error")
        protocol = LimitedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
        transport = _Transport()
        transport_calls.append(transport.calls)
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(GET)
        await asyncio.sleep(0.1)
        protocol.connection_lost(None)
        return transport.calls

    calls = asyncio.run(run())
    assert len(seen_before_body[0]) == 1
    assert seen_before_body[0][0].startswith(b"HTTP/1.1 200 ")  # sent before the piece
    assert b"".join(calls[1:]) == b"5\r\npiece\r\n0\r\n\r\n"  # chunked, in order


def test_a_closing_answer_sends_its_head_and_body_before_the_close() -> None:
    calls = _serve(
        _one_message(b"bye"), b"GET /x HTTP/1.1\r\nHost: vault\r\nConnection: close\r\n\r\n"
    )
    assert len(calls) == 1
    assert calls[0].endswith(b"\r\n\r\nbye")


def test_100_continue_goes_out_before_the_answer_and_on_its_own() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        body = message.get("body", b"")
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def run() -> list[bytes]:
        config = Config(app=app, http=LimitedHttpToolsProtocol, lifespan="off", log_level="error")
        protocol = LimitedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
        transport = _Transport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(
            b"POST /x HTTP/1.1\r\nHost: vault\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        await asyncio.sleep(0.02)
        protocol.data_received(b"data")
        await asyncio.sleep(0.05)
        protocol.connection_lost(None)
        return transport.calls

    calls = asyncio.run(run())
    assert calls[0] == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert len(calls) == 2
    assert calls[1].startswith(b"HTTP/1.1 201 ") and calls[1].endswith(b"\r\n\r\ndata")


def test_a_finished_request_is_freed_without_the_garbage_collector() -> None:
    """The held-head transport names its cycle weakly: with a strong reference back, each
    request's cycle, scope, task and state were a reference cycle, freed only by a
    collection (a pause every few hundred requests with every request in flight
    waiting). A served request must be gone once the next one on its connection starts,
    with the collector off."""
    seen: list[weakref.ref[Any]] = []

    async def run() -> list[bytes]:
        config = Config(
            app=_one_message(b"{}", 200), http=LimitedHttpToolsProtocol, lifespan="off",
            log_level="error",
        )  # fmt: skip
        protocol = LimitedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
        transport = _Transport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(GET)
        seen.append(weakref.ref(protocol.cycle))
        await asyncio.sleep(0.05)
        protocol.data_received(GET)  # the next request on the same connection
        await asyncio.sleep(0.05)
        first_freed = seen[0]() is None
        protocol.connection_lost(None)
        assert first_freed, "the first request's cycle outlived its answer"
        return transport.calls

    gc.collect()
    gc.disable()
    try:
        calls = asyncio.run(run())
    finally:
        gc.enable()
    # Both answered, each in one write.
    assert len(calls) == 2 and all(call.endswith(b"\r\n\r\n{}") for call in calls)
