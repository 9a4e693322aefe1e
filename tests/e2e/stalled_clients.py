"""What the tests of a client that stopped reading share: run the worker until an erasure
has completed, then read whatever the vault still delivers on the stalled connection."""

from __future__ import annotations

import socket
import time
import urllib.parse
from typing import Any

import httpx
import pytest

from tests.api.helpers import auth, subject_url, wait_for
from tests.jobs import run_worker_pass
from tests.support import ServerThread, read_response_head


def erasure_completes(
    vault: ServerThread,
    http: httpx.Client,
    erasure_url: str,
    privacy_key: dict[str, Any],
    timeout: float,
) -> bool:
    """Worker passes (the shred, then completion once no transfer holds a shredded key)
    until the erasure at `erasure_url` says `completed`, for up to `timeout` seconds."""

    def completed() -> bool:
        run_worker_pass(vault)
        status = http.get(erasure_url, headers=auth(privacy_key)).json()["status"]
        return bool(status == "completed")

    return wait_for(completed, timeout=timeout)


def read_what_arrives(sock: socket.socket, quiet_seconds: float = 3) -> bytes:
    """Everything the connection still delivers, until it is reset, closed, or silent for
    `quiet_seconds`."""
    received = b""
    sock.settimeout(quiet_seconds)
    try:
        while chunk := sock.recv(256 * 1024):
            received += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return received


def export_until_dropped(vault: ServerThread, ref: str, secret: str) -> None:
    """GET the subject's export over a raw socket: its head says 200, then read until the
    vault ends the answer or drops the connection (an export that did not finish)."""
    host, port = urllib.parse.urlsplit(vault.base_url).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"GET {subject_url(ref, 'export')} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {secret}\r\nConnection: close\r\n\r\n".encode()
        )
        assert read_response_head(sock).startswith(b"HTTP/1.1 200")
        try:
            while sock.recv(65536):
                pass
        except ConnectionResetError:
            pass


def vault_output_until(capsys: pytest.CaptureFixture[str], needle: str) -> str:
    """The vault's output (of a vault in this process) until it holds `needle` or 5 s have
    passed: a request's own log line follows its dropped connection."""
    logged = ""
    deadline = time.monotonic() + 5
    while needle not in logged and time.monotonic() < deadline:
        time.sleep(0.05)
        logged += capsys.readouterr().out
    return logged
