"""What the client tests share: a tenant's keys as clients, and a TCP proxy on 127.0.0.1
in front of a live vault that loses answers, cuts downloads or answers 503 on cue, so the
client's retries are tested against the real thing rather than a mock."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Literal

import httpx

from datavault_client import Client, RetryPolicy
from tests.api.helpers import create_key
from tests.support import ServerThread, Tenant, read_response_head

# Retries without the waiting: the tests count tries, not seconds.
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.0, max_delay=0.0, max_retry_after=1.0)

Fault = Literal["lose_answer", "cut_body", "unavailable", "throttled"]


def client_for(server: ServerThread, secret: str, **kwargs: object) -> Client:
    return Client(server.base_url, secret, retry=FAST_RETRY, **kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Keys:
    """One client per scope of one tenant (admin is the tenant's first key)."""

    app: Client
    privacy: Client
    officer: Client
    admin: Client
    secrets: dict[str, str]

    def close(self) -> None:
        for client in (self.app, self.privacy, self.officer, self.admin):
            client.close()


@contextmanager
def tenant_clients(server: ServerThread, tenant: Tenant) -> Iterator[Keys]:
    with server.client() as http:
        secrets = {
            "app": create_key(http, tenant, ["ingest", "read"])["secret"],
            "privacy": create_key(http, tenant, ["erasure"])["secret"],
            "officer": create_key(http, tenant, ["compliance"])["secret"],
            "admin": tenant.admin_key,
        }
    keys = Keys(
        **{name: client_for(server, secret) for name, secret in secrets.items()},
        secrets=secrets,
    )
    try:
        yield keys
    finally:
        keys.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class FaultyProxy:
    """Forwards each connection to the vault; the next `faults` are applied, one per
    connection, in order: `lose_answer` forwards the request and closes the connection
    once the vault's answer begins (the vault did the work, the client never hears),
    `cut_body` relays the answer's head and `cut_after` body bytes then closes,
    `unavailable` / `throttled` answer 503 / 429 themselves and forward nothing."""

    upstream: tuple[str, int]
    faults: list[Fault] = field(default_factory=list)
    cut_after: int = 0
    retry_after: int = 0
    connections: int = 0
    forwarded_requests: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._stopped = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                fault = self.faults.pop(0) if self.faults else None
            threading.Thread(target=self._serve, args=(conn, fault), daemon=True).start()

    def _serve(self, conn: socket.socket, fault: Fault | None) -> None:
        with conn:
            if fault in ("unavailable", "throttled"):
                _read_request(conn)  # all of it: a close with bytes unread resets the answer
                status = (
                    b"503 Service Unavailable"
                    if fault == "unavailable"
                    else (b"429 Too Many Requests")
                )
                body = b'{"type":"about:blank","title":"x","status":0,"detail":"injected"}'
                conn.sendall(
                    b"HTTP/1.1 " + status + b"\r\nContent-Type: application/problem+json\r\n"
                    b"Retry-After: " + str(self.retry_after).encode() + b"\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n"
                    b"Connection: close\r\n\r\n" + body
                )
                return
            with socket.create_connection(self.upstream) as vault:
                pump = threading.Thread(target=self._client_to_vault, args=(conn, vault),
                                        daemon=True)  # fmt: skip
                pump.start()
                self._vault_to_client(vault, conn, fault)

    def _client_to_vault(self, conn: socket.socket, vault: socket.socket) -> None:
        with suppress(OSError):
            while chunk := conn.recv(65536):
                with self._lock:
                    self.forwarded_requests.append(chunk)
                vault.sendall(chunk)
            vault.shutdown(socket.SHUT_WR)

    def _vault_to_client(
        self, vault: socket.socket, conn: socket.socket, fault: Fault | None
    ) -> None:
        relayed_body = 0
        head_done = False
        buffer = b""
        with suppress(OSError):
            while chunk := vault.recv(65536):
                if fault == "lose_answer":
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                if fault == "cut_body":
                    if not head_done:
                        buffer += chunk
                        if b"\r\n\r\n" not in buffer:
                            continue
                        head, _, chunk = buffer.partition(b"\r\n\r\n")
                        conn.sendall(head + b"\r\n\r\n")
                        head_done = True
                    room = self.cut_after - relayed_body
                    conn.sendall(chunk[:room])
                    relayed_body += min(room, len(chunk))
                    if relayed_body >= self.cut_after:
                        conn.shutdown(socket.SHUT_RDWR)
                        return
                    continue
                conn.sendall(chunk)


def _read_request(conn: socket.socket) -> None:
    """The request's head and its Content-Length body (the injected answers need no more)."""
    received = read_response_head(conn)
    head, _, body = received.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length and (chunk := conn.recv(65536)):
        body += chunk


def requests_seen(proxy: FaultyProxy, method: str, path_part: str) -> int:
    """How many request heads through the proxy start with `method` and name `path_part`."""
    heads = [c for c in proxy.forwarded_requests if c.startswith(method.encode() + b" ")]
    return sum(1 for head in heads if path_part.encode() in head.split(b"\r\n", 1)[0])


def upstream_of(server: ServerThread) -> tuple[str, int]:
    url = httpx.URL(server.base_url)
    assert url.port is not None
    return (url.host, url.port)
