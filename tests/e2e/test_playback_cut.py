"""A playback stream is a transfer of the key that minted its link (DESIGN.md, Deletion
guarantees): cut by the clock, whether or not the player is reading, once its data key is
destroyed (the artefact deleted, the subject erased) or the minting key revoked; never
cut otherwise. The vault here confirms every RECHECK seconds (in production 10 s); a
player that stopped reading is a raw socket with a small receive window."""

from __future__ import annotations

import os
import socket
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.api.helpers import access_log, artefact_url, auth, create_key, subject_url, wait_for
from tests.api.helpers import uploaded as stored
from tests.jobs import run_worker_pass
from tests.support import (
    ServerThread,
    Tenant,
    data_keys_in_memory,
    make_tenant,
    module_private_server,
    read_response_head,
)

MIB = 1024 * 1024
SIZE = 16 * MIB  # more than the kernel's and the server's buffers hold
RECHECK = 0.2
CUT_WITHIN = 5.0
LINK_ROUTE = "/playback/{token}"


vault = module_private_server("playback-cut", transfer_recheck_seconds=RECHECK)


@pytest.fixture
def own_tenant(vault: ServerThread) -> Tenant:
    return make_tenant(vault.settings, vault.database_url)


class _Player:
    """A raw HTTP/1.1 GET of a link (no Authorization header) that reads the head and a
    little of the body, then reads only when told to."""

    def __init__(self, vault: ServerThread, path: str, extra: str = "") -> None:
        host, port = urllib.parse.urlsplit(vault.base_url).netloc.split(":")
        self.request_id = f"playback-{uuid.uuid4().hex}"
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        self.sock.settimeout(10)
        self.sock.connect((host, int(port)))
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Request-Id: {self.request_id}\r\n"
            f"{extra}\r\n".encode()
        )
        self.head, _, body = read_response_head(self.sock).partition(b"\r\n\r\n")
        self.received = len(body)

    def __enter__(self) -> _Player:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def status(self) -> int:
        return int(self.head.split(b" ", 2)[1])

    def read(self, until: int, pause: float = 0.02) -> bool:
        """Read slowly until `until` body bytes in all; False if the connection ended."""
        while self.received < until:
            try:
                chunk = self.sock.recv(64 * 1024)
            except ConnectionResetError:
                return False
            if not chunk:
                return False
            self.received += len(chunk)
            time.sleep(pause)
        return True

    def drain(self, timeout: float = 5.0) -> str:
        self.sock.settimeout(timeout)
        try:
            while chunk := self.sock.recv(256 * 1024):
                self.received += len(chunk)
        except ConnectionResetError:
            return "reset"
        except TimeoutError:
            return "open"
        return "eof"


@dataclass(frozen=True)
class _Linked:
    ref: str
    artefact_id: str
    ingest: dict[str, Any]
    minter: dict[str, Any]
    compliance: dict[str, Any]
    path: str  # the link's path on the vault


def _linked(http: httpx.Client, tenant: Tenant, ref: str) -> _Linked:
    """A SIZE-byte artefact and a link to it, minted by a read key of its own."""
    ingest = create_key(http, tenant, ["ingest"])
    minter = create_key(http, tenant, ["read"])
    compliance = create_key(http, tenant, ["compliance"])
    meta = stored(http, ingest, ref, os.urandom(SIZE))
    minted = http.post(artefact_url(ref, meta["id"], "links"), headers=auth(minter))
    assert minted.status_code == 201, minted.text
    path = urllib.parse.urlsplit(minted.json()["url"]).path
    return _Linked(ref, meta["id"], ingest, minter, compliance, path)


def _row_once_cut(http: httpx.Client, link: _Linked, player: _Player) -> dict[str, Any]:
    """The use's access-log row, under the minting key, written when the vault cut it:
    waited for without reading from the player's socket."""
    found: list[dict[str, Any]] = []

    def logged() -> bool:
        rows = access_log(http, link.compliance, api_key_id=link.minter["id"])
        found.extend(r for r in rows if r["request_id"] == player.request_id)
        return bool(found)

    assert wait_for(logged, timeout=CUT_WITHIN), "the stalled playback was not cut"
    return found[0]


def test_a_stalled_playback_is_cut_once_the_minting_key_is_revoked(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    with vault.client() as http:
        link = _linked(http, own_tenant, "revoked-minter")
        with _Player(vault, link.path, f"Range: bytes={MIB}-\r\n") as player:
            time.sleep(4 * RECHECK)  # stalled: the server's buffers fill, its send waits
            assert player.status() == 206
            assert len(data_keys_in_memory(own_tenant)) == 1  # the stalled stream holds it
            revoked = http.delete(f"/v1/api-keys/{link.minter['id']}", headers=own_tenant.auth())
            assert revoked.status_code == 204
            row = _row_once_cut(http, link, player)
            keys_after = data_keys_in_memory(own_tenant)
            ended = player.drain()
    # Recorded under the minting key as what ended it (401: the key is no longer live).
    assert row["route"] == LINK_ROUTE and row["artefact_id"] == link.artefact_id
    assert row["status"] == 401 and row["bytes_out"] < SIZE - MIB
    assert keys_after == []
    assert ended in ("reset", "eof") and player.received < SIZE - MIB


def test_a_stalled_playback_is_cut_once_its_artefact_is_deleted(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    with vault.client() as http:
        link = _linked(http, own_tenant, "deleted-recording")
        with _Player(vault, link.path) as player:
            time.sleep(4 * RECHECK)
            assert player.status() == 200
            deleted = http.delete(
                artefact_url(link.ref, link.artefact_id), headers=auth(link.ingest)
            )
            assert deleted.status_code == 204
            row = _row_once_cut(http, link, player)
            keys_after = data_keys_in_memory(own_tenant)
            ended = player.drain()
    assert row["status"] == 404 and 0 < row["bytes_out"] < SIZE
    assert keys_after == []
    assert ended in ("reset", "eof") and player.received < SIZE


def test_a_reading_playback_is_cut_once_its_subject_is_erased(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    with vault.client() as http:
        link = _linked(http, own_tenant, "erased-viewer")
        privacy = create_key(http, own_tenant, ["erasure"])
        with _Player(vault, link.path) as player:
            assert player.read(256 * 1024)
            erasure = http.post(subject_url(link.ref, "erasure"), headers=auth(privacy))
            assert erasure.status_code == 202, erasure.text
            run_worker_pass(vault)  # the subject's keys go
            destroyed = time.monotonic()
            read_all = player.read(SIZE)  # the whole object would take more than 5 s
            took = time.monotonic() - destroyed
    assert not read_all and player.received < SIZE
    assert took < CUT_WITHIN


def test_a_stalled_playback_with_nothing_revoked_runs_on_and_completes(
    vault: ServerThread, own_tenant: Tenant
) -> None:
    """The negative: a live link's stream is confirmed again and again, never cut."""
    with vault.client() as http:
        link = _linked(http, own_tenant, "patient-viewer")
        with _Player(vault, link.path) as player:
            time.sleep(10 * RECHECK)  # stalled through ten checks
            assert player.read(SIZE, pause=0), "cut although nothing was revoked"
        rows: list[dict[str, Any]] = []

        def logged() -> bool:
            found = access_log(http, link.compliance, api_key_id=link.minter["id"])
            rows[:] = [r for r in found if r["request_id"] == player.request_id]
            return bool(rows)

        assert wait_for(logged)
    assert player.received == SIZE
    assert rows[0]["status"] == 200 and rows[0]["bytes_out"] == SIZE
