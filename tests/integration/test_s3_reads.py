"""An S3 read streamed by a thread of its own (vault/blobs/s3_reader.py), on a real
SeaweedFS: it reads only a bounded number of pieces ahead of its consumer, and a read cut
half way (the client gone: the generator closed; the transfer cut: its task cancelled)
ends its thread and closes its connection to the store."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import tracemalloc
import uuid
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from urllib.parse import urlsplit

import psutil
import pytest

from tests.seaweed import SeaweedS3
from vault.blobs.s3 import READ_CHUNK_BYTES, S3_POOL_CONNECTIONS, S3BlobStore
from vault.blobs.s3_reader import READ_AHEAD_PIECES, THREAD_NAME

MIB = 1024 * 1024
OBJECT_BYTES = 32 * MIB


PREFIX = f"t-{uuid.uuid4().hex[:12]}/"


@pytest.fixture(scope="module")
def stored_key(seaweed_s3: SeaweedS3) -> str:
    """A 32 MiB object, written by a store of its own (its pooled connections are not
    the reading store's)."""
    key = f"reads/{uuid.uuid4().hex}"
    writer = seaweed_s3.store(prefix=PREFIX)

    async def source() -> AsyncGenerator[bytes, None]:
        piece = os.urandom(MIB)
        for _ in range(OBJECT_BYTES // MIB):
            yield piece

    async def write() -> None:
        try:
            await writer.put_stream(key, source())
        finally:
            await writer.close()

    asyncio.run(write())
    return key


def _reader_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == THREAD_NAME]


def _connections_to(endpoint_url: str) -> int:
    """This process's open TCP connections to the store."""
    port = urlsplit(endpoint_url).port
    return sum(
        1
        for connection in psutil.Process().net_connections(kind="tcp")
        if connection.raddr
        and connection.raddr.port == port
        and connection.status == psutil.CONN_ESTABLISHED
    )


def _wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def test_a_slow_consumer_holds_only_the_read_ahead(seaweed_s3: SeaweedS3, stored_key: str) -> None:
    store = seaweed_s3.store(prefix=PREFIX)

    async def run() -> tuple[int, int]:
        received = 0
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            async for piece in store.get_range(stored_key):
                received += len(piece)
                # Slower than loopback S3: the thread would be far ahead if unbounded.
                await asyncio.sleep(0.02)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            await store.close()
        return received, peak - before

    received, grown = asyncio.run(run())
    assert received == OBJECT_BYTES
    # The pieces read ahead, the one being read, the one the consumer holds, and the
    # reading's own copies (http.client reads into a buffer, then copies it out).
    bound = (READ_AHEAD_PIECES + 4) * READ_CHUNK_BYTES
    assert grown < bound, f"peak grew by {grown / MIB:.1f} MiB"


@pytest.mark.parametrize("mapped", [False, True], ids=["get_range", "get_range_mapped"])
@pytest.mark.parametrize("cut", ["client gone", "transfer cut"])
def test_a_read_cut_half_way_ends_its_thread_and_closes_its_connection(
    seaweed_s3: SeaweedS3, stored_key: str, cut: str, mapped: bool
) -> None:
    store: S3BlobStore = seaweed_s3.store(prefix=PREFIX)
    endpoint = seaweed_s3.endpoint_url
    assert _wait_until(lambda: not _reader_threads())
    connected_before = _connections_to(endpoint)

    async def run() -> None:
        first_piece = asyncio.Event()

        async def consume() -> None:
            # As the download does it (services/artefacts.py): the read is closed when
            # its consumer ends, however it ends.
            # A download's segments are opened on the reading thread (get_range_mapped).
            if mapped:
                read = store.get_range_mapped(
                    stored_key, 0, None, piece_bytes=READ_CHUNK_BYTES, each=bytes
                )
            else:
                read = store.get_range(stored_key)
            async with aclosing(read) as reading:
                async for _piece in reading:
                    first_piece.set()
                    assert len(_reader_threads()) == 1
                    assert _connections_to(endpoint) == connected_before + 1
                    if cut == "client gone":
                        return  # the response stops asking for bytes
                    await asyncio.sleep(3600)  # a stalled client until the clock cuts it

        task = asyncio.create_task(consume())
        started = asyncio.create_task(first_piece.wait())
        await asyncio.wait([task, started], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if not first_piece.is_set():
            await task  # raises what ended the read before its first piece
        if cut == "transfer cut":
            await asyncio.sleep(0.2)  # the thread has filled its read-ahead and waits
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            await task

    try:
        asyncio.run(run())
        assert _wait_until(lambda: not _reader_threads()), "the reader thread is still alive"
        assert _wait_until(lambda: _connections_to(endpoint) <= connected_before), (
            "the cut read's connection is still open"
        )
    finally:
        asyncio.run(store.close())


def test_a_read_of_one_piece_is_one_trip_without_a_thread_of_its_own(
    seaweed_s3: SeaweedS3, stored_key: str
) -> None:
    store = seaweed_s3.store(prefix=PREFIX)

    async def run() -> tuple[bytes, bytes, list[threading.Thread]]:
        try:
            seek = b"".join([piece async for piece in store.get_range(stored_key, 5, 65_540)])
            one = [piece async for piece in store.get_range(stored_key, 0, READ_CHUNK_BYTES - 1)]
            assert len(one) == 1
            return seek, one[0], _reader_threads()
        finally:
            await store.close()

    seek, first_piece, threads = asyncio.run(run())
    assert threads == []
    assert len(seek) == 65_536 and seek == first_piece[5:65_541]


def test_a_mapped_read_applies_its_function_on_the_reading_thread_in_order(
    seaweed_s3: SeaweedS3, stored_key: str
) -> None:
    store = seaweed_s3.store(prefix=PREFIX)
    calls: list[tuple[str, int]] = []

    def each(piece: bytes) -> bytes:
        calls.append((threading.current_thread().name, len(piece)))
        return piece[:2]

    async def run() -> list[bytes]:
        try:
            reading = store.get_range_mapped(
                stored_key, 0, 5 * MIB - 1, piece_bytes=2 * MIB, each=each
            )
            return [piece async for piece in reading]
        finally:
            await store.close()

    handed = asyncio.run(run())
    # Only what `each` returned is handed out: the function ran on every piece.
    assert [len(piece) for piece in handed] == [2, 2, 2]
    assert calls == [(THREAD_NAME, 2 * MIB), (THREAD_NAME, 2 * MIB), (THREAD_NAME, MIB)]


def test_a_mapped_read_whose_function_fails_ends_its_thread_and_connection(
    seaweed_s3: SeaweedS3, stored_key: str
) -> None:
    """What a download's opener raises for a segment that is not authentic."""

    class NotAuthentic(Exception):
        pass

    store = seaweed_s3.store(prefix=PREFIX)
    endpoint = seaweed_s3.endpoint_url
    assert _wait_until(lambda: not _reader_threads())
    connected_before = _connections_to(endpoint)
    seen = 0

    def each(piece: bytes) -> bytes:
        nonlocal seen
        seen += 1
        if seen == 3:
            raise NotAuthentic
        return piece

    async def run() -> int:
        received = 0
        try:
            reading = store.get_range_mapped(stored_key, 0, None, piece_bytes=MIB, each=each)
            async with aclosing(reading) as pieces:
                async for piece in pieces:
                    received += len(piece)
        finally:
            await store.close()
        return received

    with pytest.raises(NotAuthentic):
        asyncio.run(run())
    assert seen == 3, "the thread read on after the failure"
    assert _wait_until(lambda: not _reader_threads()), "the reader thread is still alive"
    assert _wait_until(lambda: _connections_to(endpoint) <= connected_before)


def test_many_reads_at_once_keep_their_connections_pooled(
    seaweed_s3: SeaweedS3, stored_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A streamed read holds its pooled connection until its end: with botocore's default
    pool of 10, the 11th read at once and later ones would each open a connection that
    urllib3 then throws away ("Connection pool is full")."""
    store = seaweed_s3.store(prefix=PREFIX)
    reads = 16
    assert 10 < reads <= S3_POOL_CONNECTIONS

    async def run() -> None:
        all_started = asyncio.Event()
        started = 0

        async def read() -> int:
            nonlocal started
            received = 0
            reading = store.get_range(stored_key, 0, 4 * MIB - 1, piece_bytes=MIB)
            async with aclosing(reading) as pieces:
                async for piece in pieces:
                    if not received:
                        started += 1
                        if started == reads:
                            all_started.set()
                        await all_started.wait()  # every read holds its connection now
                    received += len(piece)
            return received

        try:
            for _ in range(2):  # the second round reuses the first one's connections
                assert await asyncio.gather(*(read() for _ in range(reads))) == [4 * MIB] * reads
                all_started.clear()
                started = 0
        finally:
            await store.close()

    with caplog.at_level("WARNING", logger="urllib3.connectionpool"):
        asyncio.run(run())
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
