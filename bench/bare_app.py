"""The baseline for bench/load_bench.py: a bare Starlette + asyncpg app with the vault's
record paths, doing one SQL statement per request on the same database.

    python bench/bare_app.py --port PORT --database-url URL [--pool-max 20]

PUT  /v1/subjects/{ref}/records/{name}  one INSERT … ON CONFLICT DO UPDATE of the body
GET  /v1/subjects/{ref}/records/{name}  one SELECT of the stored body
GET  /v1/subjects/{ref}/records         one SELECT of the subject's rows (newest first)

No auth, no encryption, no access log, no row-level security: what is left is the cost of
HTTP under uvicorn and one round trip to PostgreSQL, which is the floor for the vault.
It is served by uvicorn the way the vault is (uvloop, httptools, no access log).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS bench_bare_records (
    subject text NOT NULL,
    name text NOT NULL,
    version integer NOT NULL DEFAULT 1,
    value bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, name)
)
"""
UPSERT = """
INSERT INTO bench_bare_records (subject, name, value) VALUES ($1, $2, $3)
ON CONFLICT (subject, name) DO UPDATE
   SET value = excluded.value, version = bench_bare_records.version + 1, updated_at = now()
RETURNING version, updated_at, (xmax = 0) AS created
"""
SELECT_ONE = "SELECT value FROM bench_bare_records WHERE subject = $1 AND name = $2"
SELECT_LIST = """
SELECT name, version, updated_at FROM bench_bare_records WHERE subject = $1
 ORDER BY updated_at DESC, name DESC LIMIT 50
"""


def _json(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value, default=str), status, media_type="application/json")


def create_bare_app(database_url: str, pool_max: int) -> Starlette:
    pool: asyncpg.Pool | None = None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal pool
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=pool_max)
        await pool.execute(TABLE_DDL)
        try:
            yield
        finally:
            await pool.close()

    async def put_record(request: Request) -> Response:
        assert pool is not None
        body = await request.body()
        row = await pool.fetchrow(
            UPSERT, request.path_params["ref"], request.path_params["name"], body
        )
        assert row is not None
        return _json(
            {"name": request.path_params["name"], "version": row["version"],
             "updated_at": row["updated_at"]},
            201 if row["created"] else 200,
        )  # fmt: skip

    async def get_record(request: Request) -> Response:
        assert pool is not None
        value = await pool.fetchval(
            SELECT_ONE, request.path_params["ref"], request.path_params["name"]
        )
        if value is None:
            return _json({"title": "not found"}, 404)
        return Response(bytes(value), media_type="application/json")

    async def list_records(request: Request) -> Response:
        assert pool is not None
        rows = await pool.fetch(SELECT_LIST, request.path_params["ref"])
        return _json({"items": [dict(r) for r in rows], "next_cursor": None})

    async def healthz(request: Request) -> Response:
        return _json({"ok": True})

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/v1/subjects/{ref}/records", list_records, methods=["GET"]),
            Route("/v1/subjects/{ref}/records/{name}", get_record, methods=["GET"]),
            Route("/v1/subjects/{ref}/records/{name}", put_record, methods=["PUT"]),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--pool-max", type=int, default=20)
    args = parser.parse_args()
    uvicorn.run(
        create_bare_app(args.database_url, args.pool_max),
        host="127.0.0.1",
        port=args.port,
        access_log=False,
        log_level="warning",
        server_header=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
