"""A 2 GiB upload and download through a real `datavault serve` process keep the server's
memory bounded by a few segments (DESIGN.md "Key hierarchy": "Memory for an artefact of any
size stays bounded by a few segments"; "no temp-file spooling")."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import new_database, vault_process

MIB = 1024 * 1024
SIZE = 2 * 1024 * MIB
GROWTH_LIMIT = 64 * MIB


def _memory(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS of a process, in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = {
        m[1]: int(m[2]) * 1024 for m in re.finditer(r"^(VmHWM|VmRSS):\s+(\d+) kB", status, re.M)
    }
    assert set(found) == {"VmHWM", "VmRSS"}, status
    return found


class Vault:
    def __init__(self, process: subprocess.Popen[bytes], url: str, env: dict[str, str]) -> None:
        self.process, self.url, self.env = process, url, env


@pytest.fixture
def vault(tmp_path: Path, pg_admin_url: str) -> Iterator[Vault]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DATAVAULT_")},
        # A database of its own: this server's data dir (root key, blobs, ledger) is new.
        "DATABASE_URL": new_database(pg_admin_url),
        "DATAVAULT_DATA_DIR": str(tmp_path / "data"),
        "DATAVAULT_MAX_ARTEFACT_BYTES": str(4 * SIZE),
    }
    with vault_process(["serve"], env, tmp_path / "serve.log", probe="/readyz") as running:
        yield Vault(running.process, running.url, env)


def _body(buffers: list[bytes], total: int, digest: Any) -> Iterator[bytes]:
    sent = 0
    index = 0
    while sent < total:
        chunk = buffers[(index * 5) % len(buffers)][: total - sent]
        digest.update(chunk)
        sent += len(chunk)
        index += 1
        yield chunk


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_2_gib_upload_and_download_keep_server_memory_bounded(vault: Vault) -> None:
    created = subprocess.run(
        [sys.executable, "-m", "vault", "tenant", "create", "memory-check", "--json"],
        env=vault.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    admin = {"Authorization": f"Bearer {json.loads(created.stdout)['api_key']}"}
    buffers = [os.urandom(MIB) for _ in range(7)]
    url = f"{vault.url}/v1/subjects/memory-check/artefacts"

    with httpx.Client(timeout=120) as http:
        key = http.post(
            f"{vault.url}/v1/api-keys", json={"name": "m", "scopes": ["ingest", "read"]},
            headers=admin,
        )  # fmt: skip
        assert key.status_code == 201, key.text
        headers = {"Authorization": f"Bearer {key.json()['secret']}"}
        # Warm-up: the code paths of both directions, with a few segments.
        warm = http.post(url, params={"category": "recording"}, content=b"".join(buffers[:3]),
                         headers=headers)  # fmt: skip
        assert warm.status_code == 201, warm.text
        assert len(http.get(f"{url}/{warm.json()['id']}/content", headers=headers).content) == (
            3 * MIB
        )
        before = _memory(vault.process.pid)

        sent_digest = hashlib.sha256()
        started = time.monotonic()
        response = http.post(
            url,
            params={"category": "recording"},
            content=_body(buffers, SIZE, sent_digest),
            headers={**headers, "Content-Length": str(SIZE), "Content-Type": "video/mp4"},
        )
        upload_seconds = time.monotonic() - started
        assert response.status_code == 201, response.text
        meta = response.json()
        assert meta["size"] == SIZE
        assert meta["sha256"] == sent_digest.hexdigest()
        after_upload = _memory(vault.process.pid)

        got_digest = hashlib.sha256()
        received = 0
        started = time.monotonic()
        with http.stream("GET", f"{url}/{meta['id']}/content", headers=headers) as stream:
            assert stream.status_code == 200
            assert stream.headers["Content-Length"] == str(SIZE)
            for chunk in stream.iter_bytes(MIB):
                got_digest.update(chunk)
                received += len(chunk)
        download_seconds = time.monotonic() - started
        after_download = _memory(vault.process.pid)

    assert received == SIZE
    assert got_digest.hexdigest() == sent_digest.hexdigest()
    growth = after_download["VmHWM"] - before["VmHWM"]
    print(
        f"\nserver VmHWM before {before['VmHWM'] / MIB:.1f} MiB, "
        f"after upload {after_upload['VmHWM'] / MIB:.1f} MiB, "
        f"after download {after_download['VmHWM'] / MIB:.1f} MiB (growth {growth / MIB:.1f} MiB); "
        f"VmRSS {before['VmRSS'] / MIB:.1f} -> {after_download['VmRSS'] / MIB:.1f} MiB\n"
        f"upload {SIZE / upload_seconds / 1e6:.0f} MB/s ({upload_seconds:.1f} s), "
        f"download {SIZE / download_seconds / 1e6:.0f} MB/s ({download_seconds:.1f} s)"
    )
    assert growth < GROWTH_LIMIT, f"server peak memory grew by {growth / MIB:.1f} MiB"
