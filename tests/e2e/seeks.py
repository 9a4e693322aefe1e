"""A seek (a bounded Range read of one artefact) sent over a raw socket, and the access
log's rows for it: shared by the tests of a seek's row written ahead
(tests/e2e/test_seek_logged_ahead.py) and red team 14's attacks on it."""

from __future__ import annotations

import socket
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import access_log
from tests.support import ServerThread, SlowedQuery
from vault.services import access_log as access_log_service

SEEK = 64 * 1024
MIB = 1024 * 1024
# A blob's header is 77 + len(key id) bytes (crypto/FORMAT.md): where its segments start,
# for the tests that flip a byte in one.
FIXED_HEADER = 77
# How long a paused access-log commit waits (`paused_commit`).
PAUSE_SECONDS = 1.5


def paused_commit(query: str) -> str:
    """SELECT * FROM dv_access_log_chain_holding(...) → the same row, after a pause."""
    return (
        query.replace("SELECT *", "SELECT r.*", 1).replace(
            "FROM ", f"FROM (SELECT pg_sleep({PAUSE_SECONDS})) pause, ", 1
        )
        + " r"
    )


def slowed_holding_commit(
    monkeypatch: pytest.MonkeyPatch, rewrite: Callable[[str], str] = paused_commit
) -> SlowedQuery:
    """A seek's row commits through `append_holding` (it confirms the read's hold): that
    statement rewritten by `rewrite` once armed."""
    slow = SlowedQuery(access_log_service.Q, "append_holding", rewrite)
    monkeypatch.setattr(access_log_service, "Q", slow)
    return slow


def seek_request(vault: ServerThread, path: str, secret: str, first: int, rid: str) -> bytes:
    host = urllib.parse.urlsplit(vault.base_url).netloc
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {secret}\r\n"
        f"Range: bytes={first}-{first + SEEK - 1}\r\nX-Request-Id: {rid}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


def connect(vault: ServerThread) -> socket.socket:
    host, port = urllib.parse.urlsplit(vault.base_url).netloc.split(":")
    return socket.create_connection((host, int(port)), timeout=15)


def read_all(sock: socket.socket) -> bytes:
    """Everything the connection delivers until it closes, or is reset (a cut)."""
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except OSError:
        pass
    return got


def rows_of(http: httpx.Client, officer: dict[str, Any], rid: str) -> list[dict[str, Any]]:
    """The request id's access-log rows in chain order, oldest first (the search answers
    newest first, by its place in the chain)."""
    rows = [row for row in access_log(http, officer, limit=500) if row["request_id"] == rid]
    return rows[::-1]


def blob_file(vault: ServerThread, artefact_id: str) -> Path:
    files = [
        p for p in (vault.settings.data_dir / "blobs").rglob("*")
        if p.is_file() and artefact_id in str(p) and not p.name.endswith(".partial")
    ]  # fmt: skip
    assert len(files) == 1, files
    return files[0]
