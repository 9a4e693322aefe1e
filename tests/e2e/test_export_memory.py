"""A subject export through a real `datavault serve` process keeps the server's memory
bounded: a 512 MiB artefact flows from the blob store into its ZIP entry, and records
are decrypted one entry at a time, not all before the first byte (DESIGN.md "Key
hierarchy": "Memory for an artefact of any size stays bounded by a few segments";
"no temp-file spooling of bodies or exports")."""

from __future__ import annotations

import hashlib
import json
import random
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.e2e.memory_support import GROWTH_LIMIT, MIB, Vault, memory, streamed_body, vault

SIZE = 512 * MIB
# Near the 1 MiB record limit: all of them at once would be more than GROWTH_LIMIT
# (each held as sealed and as plaintext), one at a time is a few MiB.
RECORDS = 40
RECORD_BYTES = 1000 * 1000

__all__ = ["vault"]  # the fixture: `datavault serve` on a database of its own


def _record(index: int) -> bytes:
    return json.dumps(f"{index:04d}" + "r" * (RECORD_BYTES - 6)).encode()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_exporting_a_512_mib_artefact_and_large_records_keeps_server_memory_bounded(
    vault: Vault, tmp_path: Path
) -> None:
    headers = vault.key_headers("export-memory")
    seeded = random.Random(512)
    buffers = [seeded.randbytes(MIB) for _ in range(7)]
    subject = f"{vault.url}/v1/subjects/export-memory"

    with httpx.Client(timeout=120) as http:
        json_headers = {**headers, "Content-Type": "application/json"}
        # Warm-up: every code path of the export, on another subject with small data.
        warm = f"{vault.url}/v1/subjects/warm-up"
        assert http.post(f"{warm}/artefacts", params={"category": "recording"},
                         content=buffers[0], headers=headers).status_code == 201  # fmt: skip
        assert http.put(f"{warm}/records/r", params={"category": "account"},
                        content=_record(0), headers=json_headers).status_code == 201  # fmt: skip
        assert http.get(f"{warm}/export", headers=headers).status_code == 200
        before = memory(vault.process.pid)

        for index in range(RECORDS):
            written = http.put(
                f"{subject}/records/r{index:02d}", params={"category": "account"},
                content=_record(index), headers=json_headers,
            )  # fmt: skip
            assert written.status_code == 201, written.text
        sent_digest = hashlib.sha256()
        uploaded = http.post(
            f"{subject}/artefacts",
            params={"category": "recording"},
            content=streamed_body(buffers, SIZE, sent_digest),
            headers={**headers, "Content-Length": str(SIZE), "X-Filename": "call.ogg"},
        )
        assert uploaded.status_code == 201, uploaded.text
        meta = uploaded.json()
        after_writes = memory(vault.process.pid)

        # To disk, not memory: the test checks the archive after the stream has ended.
        archive_path = tmp_path / "export.zip"
        started = time.monotonic()
        with (
            http.stream("GET", f"{subject}/export", headers=headers) as stream,
            archive_path.open("wb") as archive_file,
        ):
            assert stream.status_code == 200
            for chunk in stream.iter_bytes(MIB):
                archive_file.write(chunk)
        export_seconds = time.monotonic() - started
        after_export = memory(vault.process.pid)

    with zipfile.ZipFile(archive_path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        [entry] = manifest["artefacts"]
        assert entry["id"] == meta["id"] and entry["size"] == SIZE
        got_digest = hashlib.sha256()
        with archive.open(entry["path"]) as member:  # zipfile checks the CRC-32 too
            while piece := member.read(MIB):
                got_digest.update(piece)
        assert [r["name"] for r in manifest["records"]] == [f"r{i:02d}" for i in range(RECORDS)]
        for index in (0, RECORDS - 1):
            assert archive.read(f"records/r{index:02d}.json") == _record(index)
    assert got_digest.hexdigest() == sent_digest.hexdigest() == entry["sha256"]

    growth = after_export["VmHWM"] - before["VmHWM"]
    print(
        f"\nserver VmHWM before {before['VmHWM'] / MIB:.1f} MiB, after writes "
        f"{after_writes['VmHWM'] / MIB:.1f} MiB, after export {after_export['VmHWM'] / MIB:.1f} "
        f"MiB (growth {growth / MIB:.1f} MiB); export {SIZE / export_seconds / 1e6:.0f} MB/s "
        f"({export_seconds:.1f} s)"
    )
    assert growth < GROWTH_LIMIT, f"server peak memory grew by {growth / MIB:.1f} MiB"
