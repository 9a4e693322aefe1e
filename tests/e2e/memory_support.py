"""What the memory tests share: a real `datavault serve` on a database of its own, its
peak memory, a streamed request body, and an API key to use it with."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import new_database, vault_process

MIB = 1024 * 1024
GROWTH_LIMIT = 64 * MIB
MAX_ARTEFACT_BYTES = 8 * 1024 * MIB


def memory(pid: int) -> dict[str, int]:
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

    def key_headers(self, slug: str) -> dict[str, str]:
        """A new tenant's key with ingest and read scopes, as Authorization headers."""
        created = subprocess.run(
            [sys.executable, "-m", "vault", "tenant", "create", slug, "--json"],
            env=self.env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        admin = {"Authorization": f"Bearer {json.loads(created.stdout)['api_key']}"}
        key = httpx.post(
            f"{self.url}/v1/api-keys", json={"name": "m", "scopes": ["ingest", "read"]},
            headers=admin, timeout=120,
        )  # fmt: skip
        assert key.status_code == 201, key.text
        return {"Authorization": f"Bearer {key.json()['secret']}"}


@pytest.fixture
def vault(tmp_path: Path, pg_admin_url: str) -> Iterator[Vault]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DATAVAULT_")},
        # A database of its own: this server's data dir (root key, blobs, ledger) is new.
        "DATABASE_URL": new_database(pg_admin_url),
        "DATAVAULT_DATA_DIR": str(tmp_path / "data"),
        "DATAVAULT_MAX_ARTEFACT_BYTES": str(MAX_ARTEFACT_BYTES),
    }
    with vault_process(["serve"], env, tmp_path / "serve.log", probe="/readyz") as running:
        yield Vault(running.process, running.url, env)


def body_chunk(buffers: list[bytes], index: int) -> bytes:
    """The `index`th chunk `streamed_body` sends (buffers of one size, cycled five apart)."""
    return buffers[(index * 5) % len(buffers)]


def streamed_body(buffers: list[bytes], total: int, digest: Any) -> Iterator[bytes]:
    """`total` bytes cycled from a few buffers, fed into `digest` as they are sent."""
    sent = 0
    index = 0
    while sent < total:
        chunk = body_chunk(buffers, index)[: total - sent]
        digest.update(chunk)
        sent += len(chunk)
        index += 1
        yield chunk
