"""WAIT_WRITTEN (vault/http/edge_limits.py): a transfer is over only once its last bytes
have left the process. uvicorn's `send` returns once they are handed to the transport,
which keeps what the kernel does not take yet; for a client that stopped reading that is
the whole answer, plaintext in the vault's memory. Stand-in transports, so the test
decides when the buffer empties."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl

from vault.http.edge_limits import LimitedHttpToolsProtocol


class _Transport:
    def __init__(self, buffered: int) -> None:
        self.buffered = buffered
        self.closing = False

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closing


class _Connection:
    """What `_wait_written` uses of the protocol: its transport and flow control."""

    def __init__(self, transport: _Transport) -> None:
        self.transport = transport
        self.flow = FlowControl(transport)  # type: ignore[arg-type]


def _waiter(connection: _Connection) -> Any:
    return LimitedHttpToolsProtocol._wait_written(connection)  # type: ignore[arg-type]


def test_an_empty_buffer_is_written_at_once() -> None:
    async def run() -> None:
        async with asyncio.timeout(0.5):
            await _waiter(_Connection(_Transport(0)))

    asyncio.run(run())


def test_a_buffer_the_client_does_not_read_keeps_it_waiting_until_it_drains() -> None:
    async def run() -> None:
        transport = _Transport(1024 * 1024)
        connection = _Connection(transport)
        connection.flow.pause_writing()  # over the high-water mark: the client is stalled
        waiting = asyncio.create_task(_waiter(connection))
        await asyncio.sleep(0.1)
        assert not waiting.done()  # still in the process: the transfer is not over
        transport.buffered = 10_000  # the client read some: under the low-water mark
        connection.flow.resume_writing()
        await asyncio.sleep(0.05)
        assert not waiting.done()  # not empty yet
        transport.buffered = 0
        async with asyncio.timeout(0.5):
            await waiting

    asyncio.run(run())


def test_a_connection_gone_ends_the_wait() -> None:
    async def run() -> None:
        transport = _Transport(4096)
        connection = _Connection(transport)
        connection.flow.pause_writing()
        waiting = asyncio.create_task(_waiter(connection))
        await asyncio.sleep(0.05)
        transport.closing = True
        connection.flow.resume_writing()  # what uvicorn's connection_lost does
        async with asyncio.timeout(0.5):
            await waiting

    asyncio.run(run())
