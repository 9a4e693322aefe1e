"""Red team 20: what a vault process leaves on disk when it dies, and whether a crash
may write its memory (root key, KEKs, data keys, plaintext in flight) to a core file.

One `datavault api` process for the module, started with the core-file soft limit raised
to the hard limit (as a shell or a container runtime may hand it over):
- the vault does not lower RLIMIT_CORE itself (nor turn off PR_SET_DUMPABLE), so a crash
  (a segfault in a C extension, an abort) writes the process's memory to disk wherever the
  host's core pattern points; docs/deletion-guarantee.md "accepts" this and asks the
  operator for `ulimit -c 0`, but Kubernetes has no field for it and the shipped
  deploy/compose.yaml does not set `ulimits: core: 0` (finding, strict xfail);
- killed with SIGKILL in the middle of a chunked upload, it leaves no plaintext of the
  upload anywhere under its data directory or its TMPDIR (held: the blob store writes
  ciphertext only, nothing is spooled), and its log names no subject reference, filename
  or secret (held).
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import MIB, subject_url
from tests.support import Tenant, VaultProcess, make_tenant, new_database, vault_process
from vault.config import Settings

_CANARY = b"rt20-plaintext-canary-" + uuid.uuid4().hex.encode() + b"\n"


class Running:
    def __init__(self, vault: VaultProcess, tenant: Tenant, data_dir: Path, tmp: Path) -> None:
        self.vault, self.tenant, self.data_dir, self.tmp = vault, tenant, data_dir, tmp


@pytest.fixture(scope="module")
def running(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("rt20-crash")
    url = new_database(pg_admin_url)
    settings = Settings(data_dir=root / "data", database_url=url)
    tenant = make_tenant(settings, url)
    tmp = root / "tmp"
    tmp.mkdir()
    env = {**os.environ, "DATABASE_URL": url, "DATAVAULT_DATA_DIR": str(settings.data_dir),
           "TMPDIR": str(tmp)}  # fmt: skip
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    # The child inherits the limit it starts with; put ours back at once.
    resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
    try:
        starting = vault_process(["api"], env, root / "api.log")
        vault = starting.__enter__()
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))
    try:
        yield Running(vault, tenant, settings.data_dir, tmp)
    finally:
        starting.__exit__(None, None, None)


@pytest.mark.xfail(
    strict=True,
    reason="red team 20: the vault leaves core dumps on (RLIMIT_CORE not lowered)",
)
def test_a_crash_cannot_write_the_process_memory_to_a_core_file(running: Running) -> None:
    soft, _hard = resource.prlimit(running.vault.process.pid, resource.RLIMIT_CORE)
    assert soft == 0


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


def test_a_vault_killed_mid_upload_leaves_no_plaintext_on_disk(running: Running) -> None:
    ref = f"rt20-crash-{uuid.uuid4().hex[:8]}"
    filename = f"rt20-crash-{uuid.uuid4().hex[:8]}.wav"
    created = httpx.post(
        f"{running.vault.url}/v1/api-keys", json={"name": "rt20 ingest", "scopes": ["ingest"]},
        headers=running.tenant.auth(), timeout=10,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    host, port = running.vault.url.removeprefix("http://").split(":")
    head = (
        f"POST {subject_url(ref, 'artefacts')}?category=recording HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\nAuthorization: Bearer {secret}\r\n"
        f"X-Filename: {filename}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    piece = _CANARY * (MIB // len(_CANARY))
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        for _ in range(3):
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        time.sleep(0.5)  # the vault has read, encrypted and written some of it
        running.vault.process.send_signal(signal.SIGKILL)
        running.vault.process.wait(timeout=10)
    # What it did write: the upload's ciphertext under a temporary name (the sweeper's
    # to remove once abandoned, tests/e2e/test_interrupted_upload.py).
    partial = [path for path in running.data_dir.rglob("*.partial") if path.stat().st_size]
    assert partial, sorted(running.data_dir.rglob("*"))
    assert _files_holding(running.data_dir, _CANARY[:32]) == []
    assert _files_holding(running.tmp, _CANARY[:32]) == []
    log = running.vault.log.read_text()
    for planted in (ref, filename, secret, running.tenant.admin_key, _CANARY.decode().strip()):
        assert planted not in log


def test_the_process_is_gone(running: Running) -> None:
    """The module's vault was killed above; nothing answers on its port any more."""
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{running.vault.url}/healthz", timeout=2)
