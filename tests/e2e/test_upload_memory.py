"""A 2 GiB upload and download through a real `datavault serve` process keep the server's
memory bounded by a few segments (DESIGN.md "Key hierarchy": "Memory for an artefact of any
size stays bounded by a few segments"; "no temp-file spooling")."""

from __future__ import annotations

import hashlib
import os
import time

import httpx
import pytest

from tests.e2e.memory_support import (
    GROWTH_LIMIT,
    MIB,
    Vault,
    body_chunk,
    memory,
    streamed_body,
    vault,
)

SIZE = 2 * 1024 * MIB
__all__ = ["vault"]  # the fixture: `datavault serve` on a database of its own


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_2_gib_upload_and_download_keep_server_memory_bounded(vault: Vault) -> None:
    headers = vault.key_headers("memory-check")
    buffers = [os.urandom(MIB) for _ in range(7)]
    url = f"{vault.url}/v1/subjects/memory-check/artefacts"

    with httpx.Client(timeout=120) as http:
        # Warm-up: the code paths of both directions, with a few segments.
        warm = http.post(url, params={"category": "recording"}, content=b"".join(buffers[:3]),
                         headers=headers)  # fmt: skip
        assert warm.status_code == 201, warm.text
        assert len(http.get(f"{url}/{warm.json()['id']}/content", headers=headers).content) == (
            3 * MIB
        )
        before = memory(vault.process.pid)

        sent_digest = hashlib.sha256()
        started = time.monotonic()
        response = http.post(
            url,
            params={"category": "recording"},
            content=streamed_body(buffers, SIZE, sent_digest),
            headers={**headers, "Content-Length": str(SIZE), "Content-Type": "video/mp4"},
        )
        upload_seconds = time.monotonic() - started
        assert response.status_code == 201, response.text
        meta = response.json()
        assert meta["size"] == SIZE
        assert meta["sha256"] == sent_digest.hexdigest()
        after_upload = memory(vault.process.pid)

        # Each MiB read compared with the MiB sent at its offset (the buffers are one MiB
        # each, so a read of MIB is one of them): byte-exact as a digest would be, without
        # hashing 2 GiB a second time (~1.3 s of CPU).
        received = 0
        differing: list[int] = []
        started = time.monotonic()
        with http.stream("GET", f"{url}/{meta['id']}/content", headers=headers) as stream:
            assert stream.status_code == 200
            assert stream.headers["Content-Length"] == str(SIZE)
            for index, chunk in enumerate(stream.iter_bytes(MIB)):
                if chunk != body_chunk(buffers, index)[: len(chunk)]:
                    differing.append(index)
                received += len(chunk)
        download_seconds = time.monotonic() - started
        after_download = memory(vault.process.pid)

    assert received == SIZE
    assert differing == [], f"the MiB at these offsets differ from those sent: {differing[:10]}"
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
