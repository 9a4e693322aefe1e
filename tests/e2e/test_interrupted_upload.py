"""An upload cut off half way leaves no visible artefact and no blob, not even a `.partial`
file (DESIGN.md "Failure behaviour"; API.md "Artefacts")."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from tests.api.helpers import (
    MIB,
    auth,
    blob_files,
    blob_root,
    data_keys,
    object_files,
    subject_url,
    wait_for,
)
from tests.support import ServerThread, Tenant
from vault.config import Settings


def _address(server: ServerThread) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").split(":")
    return host, int(port)


def _head(server: ServerThread, secret: str, ref: str, framing: str) -> bytes:
    host, port = _address(server)
    return (
        f"POST {subject_url(ref, 'artefacts')}?category=recording HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"Authorization: Bearer {secret}\r\n"
        f"Content-Type: audio/wav\r\n"
        f"{framing}\r\n\r\n"
    ).encode()


def _nothing_left(server: ServerThread, read_key: dict[str, Any], ref: str) -> bool:
    with server.client() as http:
        listed = http.get(subject_url(ref, "artefacts"), headers=auth(read_key))
    if listed.status_code == 404:
        return True
    assert listed.status_code == 200, listed.text
    items: list[object] = listed.json()["items"]
    return items == []


def _partials(root: Path) -> list[Path]:
    return [p for p in blob_files(root) if p.name.endswith(".partial")]


def _new_objects(root: Path, before: set[Path]) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in object_files(root) - before)


def test_upload_cut_off_after_3_of_8_mib_leaves_nothing(
    server: ServerThread, tenant: Tenant, settings: Settings
) -> None:
    root = blob_root(settings)
    before = object_files(root)
    ref = f"caller-{uuid.uuid4().hex[:10]}"
    with server.client() as http:
        keys = data_keys(http, tenant)
    body = os.urandom(3 * MIB)
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(_head(server, keys.ingest["secret"], ref, f"Content-Length: {8 * MIB}"))
        sock.sendall(body)
        time.sleep(0.3)  # the vault is now writing the upload's first segments
    # closed with 5 MiB still owed
    assert wait_for(lambda: _nothing_left(server, keys.read, ref), timeout=10)
    assert wait_for(lambda: not _new_objects(root, before), timeout=10), _new_objects(root, before)
    assert wait_for(lambda: not _partials(root), timeout=10), _partials(root)


def test_chunked_upload_cut_off_before_its_last_chunk_leaves_nothing(
    server: ServerThread, tenant: Tenant, settings: Settings
) -> None:
    root = blob_root(settings)
    before = object_files(root)
    ref = f"caller-{uuid.uuid4().hex[:10]}"
    with server.client() as http:
        keys = data_keys(http, tenant)
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(_head(server, keys.ingest["secret"], ref, "Transfer-Encoding: chunked"))
        for _ in range(3):
            chunk = os.urandom(MIB)
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        time.sleep(0.3)
    # closed without the terminating zero-length chunk
    assert wait_for(lambda: _nothing_left(server, keys.read, ref), timeout=10)
    assert wait_for(lambda: not _new_objects(root, before), timeout=10), _new_objects(root, before)
    assert wait_for(lambda: not _partials(root), timeout=10), _partials(root)


def test_the_same_raw_upload_sent_whole_is_stored(
    server: ServerThread, tenant: Tenant, settings: Settings
) -> None:
    """The positive twin: the hand-written request is well formed."""
    ref = f"caller-{uuid.uuid4().hex[:10]}"
    with server.client() as http:
        keys = data_keys(http, tenant)
    body = os.urandom(3 * MIB)
    with socket.create_connection(_address(server), timeout=30) as sock:
        sock.sendall(_head(server, keys.ingest["secret"], ref, f"Content-Length: {len(body)}"))
        sock.sendall(body)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    assert received.startswith(b"HTTP/1.1 201"), received[:300]
    with server.client() as http:
        listed = http.get(subject_url(ref, "artefacts"), headers=auth(keys.read))
    assert [item["size"] for item in listed.json()["items"]] == [len(body)]
    assert not _partials(blob_root(settings))
