"""End-to-end streaming throughput of the vault's artefact upload and download next to a bare
Starlette app under uvicorn that streams the request body to a file and the file back, over
loopback with the same httpx client code. The difference is the vault's own cost (auth, key
hierarchy, AEAD segments, metadata, access log).

    python bench/stream_bench.py [--size-mib 1024] [--repeat 1] [--skip-s3] [--s3-size-mib 256]

The vault runs as `python -m vault serve` in a temporary data directory: with DATABASE_URL
set it uses that PostgreSQL (a fresh database is not created: the schema is migrated in
place), otherwise the embedded one. The bare app runs as this file with `--bare PORT DIR`.
Both are separate processes, stopped by PID at the end. The client sends the same few
precomputed 1 MiB buffers over and over with a Content-Length, and reads the download in
1 MiB pieces without keeping it. MB = 10**6 bytes; best of --repeat runs. The bare app fsyncs
an upload before answering, as the vault does. Goal (issue 4): vault/bare >= 0.8. The vault's
peak RSS (VmHWM) is printed before and after the transfers.

Then (unless --skip-s3) the same through S3: a SeaweedFS from tests/seaweed.py on loopback,
a second vault with the S3 blob store on it, and boto3 writing and reading the same bytes
straight to SeaweedFS (a smaller object by default, --s3-size-mib).

Measured 2026-11-26 on 2 vCPU Xeon (shared with other work), `--repeat 2`: filesystem, 1 GiB:
vault 457 MB/s up, 635 down; bare 535 / 675; vault/bare 0.85 / 0.94 (goal >= 0.8: met); vault
peak RSS 78 MiB before, 84 MiB after. S3, 256 MiB: vault 43 / 249 MB/s, boto3 72 / 478,
vault/boto3 0.60 / 0.52 (the vault uploaded parts one at a time and downloads with one GET).
With two parts in flight (26 Nov, second session; `--size-mib 64`, seven runs over an
hour): upload 90-102 MB/s against boto3's 87-117, 0.79-1.16 (before, same machine that
hour: 72 against 113, 0.63); download unchanged, 352-397 against 619-1012 (one GET read
in 1 MiB pieces; reading the next piece while one is decrypted and sent was tried and
gained nothing: 352-386, the vault's decrypt and send on the shared cores is the limit);
peak RSS after 121-125 MiB.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
from processes import free_port, stop, wait_ready

MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent


# --- the bare app (runs in its own process) ---------------------------------------------


def run_bare(port: int, directory: Path) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    async def upload(request: Request) -> Response:
        path = directory / request.path_params["name"]
        size = 0
        with path.open("wb") as sink:
            async for chunk in request.stream():
                sink.write(chunk)
                size += len(chunk)
            # Durable before acknowledged, as the vault's blob store is: the comparison
            # is then about the vault's own work, not about skipping the disk flush.
            sink.flush()
            os.fsync(sink.fileno())
        return JSONResponse({"size": size}, status_code=201)

    async def download(request: Request) -> Response:
        path = directory / request.path_params["name"]
        size = path.stat().st_size

        async def pieces() -> AsyncIterator[bytes]:
            with path.open("rb") as source:
                while piece := source.read(MIB):
                    yield piece

        return StreamingResponse(
            pieces(),
            media_type="application/octet-stream",
            headers={"Content-Length": str(size)},
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/objects/{name}", upload, methods=["POST"]),
            Route("/objects/{name}", download, methods=["GET"]),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


# --- the driver ---------------------------------------------------------------------------


def body(buffers: list[bytes], total: int) -> Iterator[bytes]:
    sent = 0
    index = 0
    while sent < total:
        chunk = buffers[index % len(buffers)][: total - sent]
        sent += len(chunk)
        index += 1
        yield chunk


def timed_upload(
    http: httpx.Client, url: str, headers: dict[str, str], buffers: list[bytes], size: int
) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = http.post(
        url,
        content=body(buffers, size),
        headers={**headers, "Content-Length": str(size), "Content-Type": "video/mp4"},
    )
    elapsed = time.perf_counter() - started
    if response.status_code != 201:
        raise SystemExit(f"upload to {url} failed: {response.status_code} {response.text[:300]}")
    return elapsed, response


def timed_download(http: httpx.Client, url: str, headers: dict[str, str], size: int) -> float:
    received = 0
    started = time.perf_counter()
    with http.stream("GET", url, headers=headers) as response:
        if response.status_code != 200:
            raise SystemExit(f"download from {url} failed: {response.status_code}")
        for piece in response.iter_raw(MIB):
            received += len(piece)
    elapsed = time.perf_counter() - started
    if received != size:
        raise SystemExit(f"download from {url}: {received} bytes, expected {size}")
    return elapsed


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM) so far, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmHWM for process {pid}")


class Vault:
    """One `python -m vault serve` in its own data directory, with a tenant and an
    ingest+read key; stopped by PID."""

    def __init__(self, work: Path, name: str, size: int, extra_env: dict[str, str]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DATAVAULT_")}
        port = free_port()
        env.update(
            DATAVAULT_DATA_DIR=str(work / name),
            DATAVAULT_PORT=str(port),
            DATAVAULT_HOST="127.0.0.1",
            DATAVAULT_MAX_ARTEFACT_BYTES=str(max(size * 2, 20 * 1024**3)),
            DATAVAULT_LOG_LEVEL="warning",
            **extra_env,
        )
        self.env = env
        self.url = f"http://127.0.0.1:{port}"
        self.log = work / f"{name}.log"
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vault", "serve"],
                env=env,
                cwd=ROOT,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        self.key: dict[str, str] = {}

    def prepare(self, http: httpx.Client) -> None:
        wait_ready(f"{self.url}/readyz", self.process, self.log, 120)
        created = subprocess.run(
            [sys.executable, "-m", "vault", "tenant", "create", "bench", "--json"],
            env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if created.returncode != 0:
            raise SystemExit(f"tenant create failed: {created.stderr}")
        admin = {"Authorization": f"Bearer {json.loads(created.stdout)['api_key']}"}
        made = http.post(
            f"{self.url}/v1/api-keys",
            json={"name": "bench", "scopes": ["ingest", "read"]},
            headers=admin,
        )
        if made.status_code != 201:
            raise SystemExit(f"key create failed: {made.text}")
        self.key = {"Authorization": f"Bearer {made.json()['secret']}"}

    @property
    def artefacts(self) -> str:
        return f"{self.url}/v1/subjects/bench-subject/artefacts"

    def round_trip(
        self, http: httpx.Client, buffers: list[bytes], size: int
    ) -> tuple[float, float]:
        """Upload then download one artefact of `size` bytes, delete it; MB/s each way."""
        seconds, response = timed_upload(
            http, f"{self.artefacts}?category=recording", self.key, buffers, size
        )
        artefact = f"{self.artefacts}/{response.json()['id']}"
        down = timed_download(http, f"{artefact}/content", self.key, size)
        http.delete(artefact, headers=self.key)
        return size / seconds / 1e6, size / down / 1e6


def keep_best(best: dict[str, float], upload: float, download: float) -> None:
    best["upload"] = max(best.get("upload", 0.0), upload)
    best["download"] = max(best.get("download", 0.0), download)


def print_table(title: str, rows: dict[str, dict[str, float]], reference: str) -> float:
    vault, other = rows["vault"], rows[reference]
    up_ratio = vault["upload"] / other["upload"]
    down_ratio = vault["download"] / other["download"]
    print(title)
    print(f"{'':12}{'upload MB/s':>14}{'download MB/s':>16}")
    for name, row in rows.items():
        print(f"{name:12}{row['upload']:>14.0f}{row['download']:>16.0f}")
    print(f"{'vault/' + reference:12}{up_ratio:>14.2f}{down_ratio:>16.2f}")
    return up_ratio


class BodyReader(io.RawIOBase):
    """The same bytes `body` sends, as a file object for boto3's upload_fileobj."""

    def __init__(self, buffers: list[bytes], size: int) -> None:
        self._pieces = body(buffers, size)
        self._rest = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._rest:
            piece = next(self._pieces, None)
            if piece is None:
                return 0
            self._rest = memoryview(piece)
        n = min(len(target), len(self._rest))
        target[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


def s3_section(work: Path, args: argparse.Namespace, buffers: list[bytes]) -> None:
    """The vault with the S3 blob store on a local SeaweedFS, next to boto3 talking to
    the same SeaweedFS directly with the same bytes."""
    sys.path.insert(0, str(ROOT))
    from tests.seaweed import REGION, running_seaweed

    size = args.s3_size_mib * MIB
    (work / "seaweed").mkdir()
    results: dict[str, dict[str, float]] = {"vault": {}, "boto3": {}}
    rss: list[float] = []
    # running_seaweed sets the AWS_* credentials in os.environ while it runs; the vault
    # started inside inherits them.
    with running_seaweed(work / "seaweed") as seaweed:
        vault = Vault(
            work,
            "vault-s3",
            size,
            {
                "DATAVAULT_S3_BUCKET": seaweed.bucket,
                "DATAVAULT_S3_ENDPOINT_URL": seaweed.endpoint_url,
                "DATAVAULT_S3_REGION": REGION,
            },
        )
        client = seaweed.client()
        try:
            with httpx.Client(timeout=300) as http:
                vault.prepare(http)
                vault.round_trip(http, buffers, 4 * MIB)  # warm up
                rss.append(peak_rss_mib(vault.process.pid))
                for attempt in range(args.repeat):
                    keep_best(results["vault"], *vault.round_trip(http, buffers, size))

                    key = f"bench/direct-{attempt}"
                    started = time.perf_counter()
                    reader = io.BufferedReader(BodyReader(buffers, size), MIB)
                    client.upload_fileobj(reader, seaweed.bucket, key)
                    up = size / (time.perf_counter() - started) / 1e6
                    received = 0
                    started = time.perf_counter()
                    streamed = client.get_object(Bucket=seaweed.bucket, Key=key)["Body"]
                    while piece := streamed.read(MIB):
                        received += len(piece)
                    down = size / (time.perf_counter() - started) / 1e6
                    if received != size:
                        raise SystemExit(f"boto3 read {received} bytes, expected {size}")
                    client.delete_object(Bucket=seaweed.bucket, Key=key)
                    keep_best(results["boto3"], up, down)
                rss.append(peak_rss_mib(vault.process.pid))
        finally:
            client.close()
            stop(vault.process)
    print()
    up_ratio = print_table(
        f"S3 (SeaweedFS on loopback): {args.s3_size_mib} MiB object (--s3-size-mib; smaller "
        f"than the filesystem one to keep the run short), best of {args.repeat}; boto3 = "
        "upload_fileobj (default TransferConfig: 8 MiB parts, up to 10 threads) and "
        "get_object streamed in 1 MiB reads",
        results,
        "boto3",
    )
    print(f"vault (S3) peak RSS: {rss[0]:.0f} MiB before the transfers, {rss[1]:.0f} MiB after")
    print(f"vault/boto3 upload: {up_ratio:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--s3-size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-s3", action="store_true", help="only the filesystem section")
    parser.add_argument("--bare", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        run_bare(int(args.bare[0]), Path(args.bare[1]))
        return 0

    size = args.size_mib * MIB
    work = Path(tempfile.mkdtemp(prefix="datavault-stream-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        vault = Vault(work, "vault", size, {})
        processes.append(vault.process)
        bare_port = free_port()
        (work / "bare").mkdir()
        bare_log = work / "bare.log"
        with bare_log.open("wb") as sink:
            processes.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--bare", str(bare_port), str(work / "bare")],
                    cwd=ROOT,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            )
        bare_url = f"http://127.0.0.1:{bare_port}"
        wait_ready(f"{bare_url}/healthz", processes[1], bare_log, 30)

        buffers = [os.urandom(MIB) for _ in range(4)]
        results: dict[str, dict[str, float]] = {"vault": {}, "bare": {}}
        with httpx.Client(timeout=300) as http:
            vault.prepare(http)
            # Warm both up (imports, pools, key caches) with a small object.
            vault.round_trip(http, buffers, 4 * MIB)
            timed_upload(http, f"{bare_url}/objects/warm", {}, buffers, 4 * MIB)
            rss_before = peak_rss_mib(vault.process.pid)

            for _ in range(args.repeat):
                keep_best(results["vault"], *vault.round_trip(http, buffers, size))

                seconds, _ = timed_upload(http, f"{bare_url}/objects/big", {}, buffers, size)
                down = timed_download(http, f"{bare_url}/objects/big", {}, size)
                keep_best(results["bare"], size / seconds / 1e6, size / down / 1e6)
                (work / "bare" / "big").unlink()
            rss_after = peak_rss_mib(vault.process.pid)
        for process in processes:
            stop(process)

        up_ratio = print_table(
            f"filesystem: {args.size_mib} MiB object over loopback, best of {args.repeat}",
            results,
            "bare",
        )
        print(f"vault peak RSS: {rss_before:.0f} MiB before the transfers, {rss_after:.0f} after")
        verdict = "met" if up_ratio >= 0.8 else "NOT met"
        print(f"goal: vault upload >= 0.8 x bare upload: {verdict} ({up_ratio:.3f})")
        if not args.skip_s3:
            s3_section(work, args, buffers)
        return 0
    finally:
        for process in processes:
            stop(process)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
