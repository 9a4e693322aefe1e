"""The client side of bench/load_bench.py: a minimal HTTP/1.1 keep-alive client on raw
asyncio streams, and the mixed record workload it drives.

A general-purpose client (httpx) costs more CPU per request than the servers it measures
do, and on a 2-core machine the client shares the cores with them; a few dozen lines of
asyncio keep the client's share small, and the same for both servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field

# The workload: shares of PUT record, GET record, list records (issue #6 part 4).
# Percent of requests that are lists; PUTs are --put-percent, GETs the rest.
LIST_PERCENT = 10
RECORD_NAMES = ("profile", "preferences", "address", "consent")
CATEGORY = "account"


class ProtocolError(Exception):
    """The server's answer was not HTTP this client understands."""


class Connection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1."""

    def __init__(self, port: int, authorization: str) -> None:
        self._port = port
        self._auth = authorization
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self._port)
        assert self._reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self._port}\r\n"
            f"Authorization: Bearer {self._auth}\r\n"
        )
        if body or method == "PUT":
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self._writer.write(head.encode() + b"\r\n" + body)
        try:
            return await self._response(self._reader)
        except BaseException:
            await self.close()
            raise

    async def _response(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ProtocolError("not an HTTP/1.x status line")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            payload = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            payload = await _read_chunked(reader)
        else:
            raise ProtocolError("response without a length")
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return int(parts[1]), payload

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    payload = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return bytes(payload)
        payload += await reader.readexactly(size)
        await reader.readexactly(2)


def json_body(size: int, serial: int) -> bytes:
    """A JSON object of exactly `size` bytes (at least ~30) that differs per `serial`."""
    head = f'{{"n":{serial},"pad":"'
    tail = '"}'
    pad = max(0, size - len(head) - len(tail))
    return (head + "x" * pad + tail).encode()


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    # Each kind's own latencies (put, get, list): which of them the p99 is.
    kind_latencies: dict[str, list[float]] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.latencies)


@dataclass(frozen=True)
class Workload:
    ports: tuple[int, ...]  # a server's processes; client n talks to n mod len
    authorization: str
    subjects: int
    payload_bytes: int
    put_percent: int = 45

    def port_for(self, slot: int) -> int:
        return self.ports[slot % len(self.ports)]

    @property
    def mix(self) -> tuple[tuple[str, int], ...]:
        get_percent = 100 - LIST_PERCENT - self.put_percent
        return (("put", self.put_percent), ("get", get_percent), ("list", LIST_PERCENT))

    def path(self, subject: int, name: str | None = None) -> str:
        base = f"/v1/subjects/load-{subject}/records"
        return base if name is None else f"{base}/{name}?category={CATEGORY}"


EXPECTED = {"put": (200, 201), "get": (200,), "list": (200,)}


async def populate(workload: Workload, concurrency: int) -> None:
    """Every (subject, record) once, so GETs find something from the first request."""
    pairs = [(s, n) for s in range(workload.subjects) for n in RECORD_NAMES]

    async def worker(slot: int) -> None:
        conn = Connection(workload.port_for(slot), workload.authorization)
        try:
            for index in range(slot, len(pairs), concurrency):
                subject, name = pairs[index]
                body = json_body(workload.payload_bytes, index)
                status, text = await conn.request("PUT", workload.path(subject, name), body)
                if status not in EXPECTED["put"]:
                    raise SystemExit(f"populate: PUT answered {status}: {text[:300]!r}")
        finally:
            await conn.close()

    await asyncio.gather(*(worker(slot) for slot in range(concurrency)))


async def drive(workload: Workload, concurrency: int, seconds: float, seed: int) -> Tally:
    """`concurrency` clients, each one request at a time, for `seconds`."""
    tally = Tally()
    deadline = time.perf_counter() + seconds
    kinds = [kind for kind, _ in workload.mix]
    weights = [weight for _, weight in workload.mix]

    async def client(slot: int) -> None:
        rng = random.Random(seed * 1000 + slot)
        conn = Connection(workload.port_for(slot), workload.authorization)
        serial = 0
        try:
            while time.perf_counter() < deadline:
                kind = rng.choices(kinds, weights)[0]
                subject = rng.randrange(workload.subjects)
                name = rng.choice(RECORD_NAMES)
                serial += 1
                started = time.perf_counter()
                try:
                    if kind == "put":
                        body = json_body(workload.payload_bytes, serial)
                        status, _ = await conn.request("PUT", workload.path(subject, name), body)
                    elif kind == "get":
                        status, _ = await conn.request("GET", workload.path(subject, name))
                    else:
                        status, payload = await conn.request("GET", workload.path(subject))
                        if status == 200:
                            json.loads(payload)
                except (OSError, asyncio.IncompleteReadError, ProtocolError, ValueError) as exc:
                    tally.errors[f"{kind}:{type(exc).__name__}"] += 1
                    continue
                took = time.perf_counter() - started
                tally.latencies.append(took)
                tally.kind_latencies.setdefault(kind, []).append(took)
                tally.by_kind[kind] += 1
                if status not in EXPECTED[kind]:
                    tally.errors[f"{kind}:{status}"] += 1
        finally:
            await conn.close()

    await asyncio.gather(*(client(slot) for slot in range(concurrency)))
    return tally


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1) of unsorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
    return ordered[rank]
