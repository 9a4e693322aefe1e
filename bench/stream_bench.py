"""End-to-end streaming throughput of the vault's artefact upload and download next to a bare
Starlette app under uvicorn that streams the request body to a file and the file back, over
loopback with the same httpx client code. The difference is the vault's own cost (auth, key
hierarchy, AEAD segments, metadata, access log).

    python bench/stream_bench.py [--size-mib 1024] [--repeat 1]

The vault runs as `python -m vault serve` in a temporary data directory: with DATABASE_URL
set it uses that PostgreSQL (a fresh database is not created: the schema is migrated in
place), otherwise the embedded one. The bare app runs as this file with `--bare PORT DIR`.
Both are separate processes, stopped by PID at the end. The client sends the same few
precomputed 1 MiB buffers over and over with a Content-Length, and reads the download in
1 MiB pieces without keeping it. MB = 10**6 bytes; best of --repeat runs. The bare app fsyncs
an upload before answering, as the vault does. Goal (issue 4): vault/bare >= 0.8.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx

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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{url} did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--bare", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        run_bare(int(args.bare[0]), Path(args.bare[1]))
        return 0

    size = args.size_mib * MIB
    work = Path(tempfile.mkdtemp(prefix="datavault-stream-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DATAVAULT_")}
        vault_port, bare_port = free_port(), free_port()
        env.update(
            DATAVAULT_DATA_DIR=str(work / "vault"),
            DATAVAULT_PORT=str(vault_port),
            DATAVAULT_MAX_ARTEFACT_BYTES=str(max(size * 2, 20 * 1024**3)),
            DATAVAULT_LOG_LEVEL="warning",
        )
        (work / "bare").mkdir()
        vault_log, bare_log = work / "vault.log", work / "bare.log"
        with vault_log.open("wb") as sink:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "vault", "serve"],
                    env=env,
                    cwd=ROOT,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            )
        with bare_log.open("wb") as sink:
            processes.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--bare", str(bare_port), str(work / "bare")],
                    cwd=ROOT,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            )
        vault_url, bare_url = f"http://127.0.0.1:{vault_port}", f"http://127.0.0.1:{bare_port}"
        wait_ready(f"{bare_url}/healthz", processes[1], bare_log, 30)
        wait_ready(f"{vault_url}/readyz", processes[0], vault_log, 120)

        created = subprocess.run(
            [sys.executable, "-m", "vault", "tenant", "create", "bench", "--json"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if created.returncode != 0:
            raise SystemExit(f"tenant create failed: {created.stderr}")
        admin = {"Authorization": f"Bearer {json.loads(created.stdout)['api_key']}"}
        buffers = [os.urandom(MIB) for _ in range(4)]
        results: dict[str, dict[str, float]] = {"vault": {}, "bare": {}}
        with httpx.Client(timeout=300) as http:
            made = http.post(
                f"{vault_url}/v1/api-keys",
                json={"name": "bench", "scopes": ["ingest", "read"]},
                headers=admin,
            )
            if made.status_code != 201:
                raise SystemExit(f"key create failed: {made.text}")
            key = {"Authorization": f"Bearer {made.json()['secret']}"}
            artefacts = f"{vault_url}/v1/subjects/bench-subject/artefacts?category=recording"
            # Warm both up (imports, pools, key caches) with a small object.
            timed_upload(http, artefacts, key, buffers, 4 * MIB)
            timed_upload(http, f"{bare_url}/objects/warm", {}, buffers, 4 * MIB)

            for _ in range(args.repeat):
                seconds, response = timed_upload(http, artefacts, key, buffers, size)
                artefact_id = response.json()["id"]
                content = f"{vault_url}/v1/subjects/bench-subject/artefacts/{artefact_id}/content"
                down = timed_download(http, content, key, size)
                best = results["vault"]
                best["upload"] = max(best.get("upload", 0.0), size / seconds / 1e6)
                best["download"] = max(best.get("download", 0.0), size / down / 1e6)
                http.delete(
                    f"{vault_url}/v1/subjects/bench-subject/artefacts/{artefact_id}", headers=key
                )

                seconds, _ = timed_upload(http, f"{bare_url}/objects/big", {}, buffers, size)
                down = timed_download(http, f"{bare_url}/objects/big", {}, size)
                best = results["bare"]
                best["upload"] = max(best.get("upload", 0.0), size / seconds / 1e6)
                best["download"] = max(best.get("download", 0.0), size / down / 1e6)
                (work / "bare" / "big").unlink()

        vault, bare = results["vault"], results["bare"]
        up_ratio = vault["upload"] / bare["upload"]
        down_ratio = vault["download"] / bare["download"]
        print(f"object: {args.size_mib} MiB over loopback, best of {args.repeat}")
        print(f"{'':10}{'upload MB/s':>14}{'download MB/s':>16}")
        print(f"{'vault':10}{vault['upload']:>14.0f}{vault['download']:>16.0f}")
        print(f"{'bare':10}{bare['upload']:>14.0f}{bare['download']:>16.0f}")
        print(f"{'vault/bare':10}{up_ratio:>14.2f}{down_ratio:>16.2f}")
        verdict = "met" if up_ratio >= 0.8 else "NOT met"
        print(f"goal: vault upload >= 0.8 x bare upload: {verdict} ({up_ratio:.3f})")
        return 0
    finally:
        for process in processes:
            stop(process)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
