"""The baseline for bench/stream_bench.py: a bare Starlette app under uvicorn that streams
a request body to a file and a file (or one byte range of it) back.

    python bench/bare_stream_app.py PORT DIRECTORY

POST /objects/{name}  the body to DIRECTORY/name, fsynced before the answer (the vault's
                      blob store makes an upload durable before acknowledging it too)
GET  /objects/{name}  the file in 1 MiB pieces; with `Range: bytes=a-b` that range (206)

No auth, no encryption, no hashing, no metadata, no access log: what is left is the cost
of HTTP under uvicorn and the disk, which is the floor for the vault. Served as the
vault is (uvloop and httptools where installed), without an access log.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MIB = 1024 * 1024


def create_bare_app(directory: Path) -> Starlette:
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
        # One `bytes=a-b` range, as the range-read section asks; else the whole file.
        wanted = request.headers.get("range", "").removeprefix("bytes=").split("-")
        ranged = len(wanted) == 2
        start, end = (int(wanted[0]), int(wanted[1])) if ranged else (0, size - 1)

        async def pieces() -> AsyncIterator[bytes]:
            with path.open("rb") as source:
                source.seek(start)
                left = end + 1 - start
                while left > 0 and (piece := source.read(min(MIB, left))):
                    left -= len(piece)
                    yield piece

        headers = {"Content-Length": str(end + 1 - start)}
        if ranged:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return StreamingResponse(
            pieces(),
            status_code=206 if ranged else 200,
            media_type="application/octet-stream",
            headers=headers,
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/objects/{name}", upload, methods=["POST"]),
            Route("/objects/{name}", download, methods=["GET"]),
        ]
    )


def main() -> None:
    port, directory = int(sys.argv[1]), Path(sys.argv[2])
    uvicorn.run(
        create_bare_app(directory),
        host="127.0.0.1",
        port=port,
        access_log=False,
        log_level="warning",
        server_header=False,
    )


if __name__ == "__main__":
    main()
