"""What `datavault serve` prints for the person who started it (stderr): a root key
created just now as a readable block, then the URL once the server listens, and the
first-tenant hint only while the vault has no tenant."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support import free_port


def _clean_env() -> dict[str, str]:
    prefixes = ("DATAVAULT_", "DATABASE_URL")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


@contextmanager
def _serving(data_dir: Path, log: Path) -> Iterator[tuple[list[str], str]]:
    """`serve` until its listening line: (the stderr lines up to and including it, the
    URL), checking at that very moment that the URL answers."""
    port = free_port()
    with log.open("ab") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "vault", "serve", "--data-dir", str(data_dir),
             "--port", str(port)],
            env=_clean_env(), stdout=stdout, stderr=subprocess.PIPE,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        assert process.stderr is not None
        fd = process.stderr.fileno()
        received = b""

        def lines() -> list[str]:
            return received.decode().split("\n")[:-1]  # complete lines only

        deadline = time.monotonic() + 90
        while not any(line.startswith("datavault listening on") for line in lines()):
            if select.select([fd], [], [], 1)[0]:
                chunk = os.read(fd, 65536)
                assert chunk, f"serve exited:\n{received.decode()}\n{log.read_text()[-3000:]}"
                received += chunk
            assert time.monotonic() < deadline, received
        # Printed only once the server listens: it answers at once, no retry.
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        # The hint, if any, is part of the same write.
        while select.select([fd], [], [], 0.5)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            received += chunk
        yield lines(), url
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        if process.stderr is not None:
            process.stderr.close()
        assert code == 0


def test_first_start_warns_then_listens_then_hints_until_a_tenant_exists(
    embedded_dir: Path,
) -> None:
    data_dir = embedded_dir / "data"
    with _serving(data_dir, embedded_dir / "first.log") as (lines, url):
        key_file = data_dir.absolute() / "root.key"
        start = lines.index("=" * 72)
        end = lines.index("=" * 72, start + 1)
        block = lines[start : end + 1]
        assert block[1] == f"  ROOT KEY CREATED: {key_file}"
        assert 6 <= len(block) <= 12
        # Readable in an 80-column terminal, but for the line naming the file (its path
        # is as long as it is).
        assert all(len(line) <= 80 for line in block if str(key_file) not in line)
        assert "keep the key out of the data directory's backups." in "\n".join(block)
        listening = lines.index(f"datavault listening on {url}")
        assert listening == end + 1, "the URL comes right after the warning"
        assert lines[listening + 1 :] == [
            "  no tenant yet; create one and its first admin API key:",
            "    datavault tenant create my-tenant",
            f"  then: curl -H 'Authorization: Bearer <key>' {url}/v1/api-keys",
        ]
        created = subprocess.run(
            [sys.executable, "-m", "vault", "tenant", "create", "acme", "--data-dir",
             str(data_dir)],
            env=_clean_env(), capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
    # The JSON log keeps its own warning line for log pipelines.
    assert "ROOT KEY CREATED" in (embedded_dir / "first.log").read_text()

    with _serving(data_dir, embedded_dir / "second.log") as (lines, url):
        assert lines[-1] == f"datavault listening on {url}"
        text = "\n".join(lines)
        assert "ROOT KEY CREATED" not in text
        assert "tenant create" not in text
