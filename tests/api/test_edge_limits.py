"""Limits on the request head over a real socket (issue 18, item 9): a request target up
to MAX_REQUEST_TARGET_BYTES and header fields up to MAX_HEADER_BYTES / MAX_HEADER_FIELDS
are served; one byte or field more is 414 or 431 problem+json with a request id, logged,
and the connection closed. A 10 MB header is refused, not served."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from tests.support import ServerThread
from vault.http.edge_limits import MAX_HEADER_BYTES, MAX_HEADER_FIELDS, MAX_REQUEST_TARGET_BYTES


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool


def _exchange(server: ServerThread, head: bytes, *, chunk: int = 65536) -> Answer:
    """Send `head` (requests without bodies) and read until the server closes the
    connection (every request here asks it to, or is refused)."""
    address = urlsplit(server.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        for start in range(0, len(head), chunk):
            try:
                sock.sendall(head[start : start + chunk])
            except (BrokenPipeError, ConnectionResetError):
                break  # refused part way: the answer is already waiting
        received, closed = b"", False
        try:
            while data := sock.recv(65536):
                received += data
            closed = True
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            pass
    top, _, body = received.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
    return Answer(int(lines[0].split()[1]), headers, body, closed)


def _host(server: ServerThread) -> bytes:
    return urlsplit(server.base_url).netloc.encode()


def _get(server: ServerThread, target: bytes, *fields: tuple[bytes, bytes]) -> bytes:
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: " + _host(server)]
    lines += [name + b": " + value for name, value in fields]
    return b"\r\n".join([*lines, b"Connection: close", b"", b""])


def _target_of(length: int) -> bytes:
    base = b"/healthz?pad="
    return base + b"a" * (length - len(base))


def _padding_for(server: ServerThread, total: int) -> bytes:
    """An X-Pad value that makes the header fields (name + value, summed) `total` bytes,
    with the Host and Connection fields _get sends."""
    fixed = len(b"Host") + len(_host(server)) + len(b"Connection") + len(b"close")
    return b"p" * (total - fixed - len(b"X-Pad"))


def _assert_problem(answer: Answer, status: int, slug: str) -> None:
    assert answer.status == status, answer
    assert answer.headers["content-type"].startswith("application/problem+json")
    body = json.loads(answer.body)
    assert body["status"] == status
    assert body["type"].endswith("/" + slug)
    assert body["title"] and body["detail"]
    assert body["request_id"] == answer.headers["x-request-id"]
    assert answer.closed


def test_a_request_target_at_the_limit_is_served(server: ServerThread) -> None:
    target = _target_of(MAX_REQUEST_TARGET_BYTES)
    assert len(target) == MAX_REQUEST_TARGET_BYTES
    assert _exchange(server, _get(server, target)).status == 200


def test_a_request_target_one_byte_over_the_limit_is_414(server: ServerThread) -> None:
    answer = _exchange(server, _get(server, _target_of(MAX_REQUEST_TARGET_BYTES + 1)))
    _assert_problem(answer, 414, "uri-too-long")


def test_header_fields_at_the_byte_limit_are_served(server: ServerThread) -> None:
    pad = _padding_for(server, MAX_HEADER_BYTES)
    assert _exchange(server, _get(server, b"/healthz", (b"X-Pad", pad))).status == 200


def test_header_fields_one_byte_over_the_limit_are_431(server: ServerThread) -> None:
    pad = _padding_for(server, MAX_HEADER_BYTES + 1)
    answer = _exchange(server, _get(server, b"/healthz", (b"X-Pad", pad)))
    _assert_problem(answer, 431, "headers-too-large")


def test_header_fields_at_the_count_limit_are_served_and_one_more_is_431(
    server: ServerThread,
) -> None:
    def fields(count: int) -> list[tuple[bytes, bytes]]:
        # Host and Connection are two of them.
        return [(b"X-F%d" % n, b"v") for n in range(count - 2)]

    at_limit = _exchange(server, _get(server, b"/healthz", *fields(MAX_HEADER_FIELDS)))
    over = _exchange(server, _get(server, b"/healthz", *fields(MAX_HEADER_FIELDS + 1)))
    assert at_limit.status == 200
    _assert_problem(over, 431, "headers-too-large")


def test_a_10_mb_header_is_refused_without_reading_it_all(server: ServerThread) -> None:
    started = time.monotonic()
    answer = _exchange(server, _get(server, b"/healthz", (b"X-Big", b"x" * 10_000_000)))
    _assert_problem(answer, 431, "headers-too-large")
    assert time.monotonic() - started < 10


def test_a_refused_head_keeps_the_client_address_and_is_logged(server: ServerThread) -> None:
    pad = _padding_for(server, MAX_HEADER_BYTES + 100)
    head = _get(server, b"/healthz", (b"X-Forwarded-For", b"198.51.100.151"), (b"X-Pad", pad))
    answer = _exchange(server, head)
    _assert_problem(answer, 431, "headers-too-large")
    request_id = answer.headers["x-request-id"]
    # The access log's row for it (the deployment-wide chain: no tenant).
    rows = _deployment_rows(server, request_id)
    assert [(r["status"], r["route"], str(r["ip"]).split("/")[0]) for r in rows] == [
        (431, "(unmatched)", "198.51.100.151")
    ]


def test_a_request_that_is_not_http_is_a_400_problem(server: ServerThread) -> None:
    answer = _exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
    _assert_problem(answer, 400, "malformed-request")


@pytest.mark.parametrize("follow_up", [b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"])
def test_nothing_after_a_refused_head_is_served(server: ServerThread, follow_up: bytes) -> None:
    # Without "Connection: close", so a keep-alive server would go on to the next request.
    pad = _padding_for(server, MAX_HEADER_BYTES + 1 + len(b"Connectionclose"))
    head = _get(server, b"/healthz", (b"X-Pad", pad)).replace(b"Connection: close\r\n", b"")
    answer = _exchange(server, head + follow_up)
    _assert_problem(answer, 431, "headers-too-large")
    assert answer.body.count(b"HTTP/1.1") == 0  # one answer, then the connection closed


def _deployment_rows(server: ServerThread, request_id: str) -> list[dict[str, object]]:
    import asyncio
    import uuid

    import asyncpg

    async def run() -> list[dict[str, object]]:
        conn = await asyncpg.connect(server.database_url)
        try:
            for _ in range(50):
                async with conn.transaction():
                    await conn.execute(
                        "SELECT set_config('datavault.tenant_id', $1, true)", str(uuid.UUID(int=0))
                    )
                    rows = await conn.fetch(
                        "SELECT status, route, ip FROM access_log WHERE request_id = $1",
                        request_id,
                    )
                if rows:
                    return [dict(row) for row in rows]
                await asyncio.sleep(0.1)
            return []
        finally:
            await conn.close()

    return asyncio.run(run())


def test_a_refused_head_pipelined_behind_a_good_request_waits_its_turn(
    server: ServerThread,
) -> None:
    good = _get(server, b"/healthz").replace(b"Connection: close\r\n", b"")
    pad = _padding_for(server, MAX_HEADER_BYTES + 1)
    answer = _exchange(server, good + _get(server, b"/healthz", (b"X-Pad", pad)))
    assert answer.status == 200  # the first answer is whole...
    second = answer.body.partition(b"HTTP/1.1 ")[2]
    assert second.startswith(b"431 "), answer.body[:300]  # ...then the refusal
    assert answer.closed
