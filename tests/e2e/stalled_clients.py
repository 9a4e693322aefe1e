"""What the tests of a client that stopped reading share: run the worker until an erasure
has completed, then read whatever the vault still delivers on the stalled connection."""

from __future__ import annotations

import socket
from typing import Any

import httpx

from tests.api.helpers import auth, wait_for
from tests.jobs import run_worker_pass
from tests.support import ServerThread


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
