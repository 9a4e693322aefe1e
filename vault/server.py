"""Running the HTTP server under uvicorn with the vault's own choices."""

from __future__ import annotations

import gc
import signal
import socket
import sys

import uvicorn

from vault.app import create_app
from vault.config import Settings
from vault.http.edge_limits import LimitedHttpToolsProtocol
from vault.runtime import prepare_database

# A full (generation 2) garbage collection walks every object the process holds: 35-40
# ms on the load bench, during which no request moves (it was the p99). What start-up
# allocated (modules, the app, pools) lives as long as the process, so it is frozen out
# of collections (gc.freeze); young collections run every GC_YOUNG_THRESHOLD allocations
# rather than 700, fewer pauses for a little memory.
GC_YOUNG_THRESHOLD = 20_000


class _Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def uvicorn_config(
    settings: Settings, database_url: str, *, run_jobs: bool = True, serve_api: bool = True
) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings, database_url, run_jobs=run_jobs, serve_api=serve_api),
        host=settings.host,
        port=settings.port,
        # The vault reads X-Forwarded-For itself, trusting only configured proxies.
        proxy_headers=False,
        forwarded_allow_ips="",
        # uvicorn's access log prints raw paths, which carry subject references; the
        # vault writes its own request line with the route template instead.
        access_log=False,
        log_config=None,
        server_header=False,
        # httptools with limits on the request line and header fields (414, 431):
        # uvicorn's own protocols have none (httptools) or answer a plain 400 (h11).
        http=LimitedHttpToolsProtocol,
        timeout_graceful_shutdown=int(settings.drain_seconds),
        lifespan="on",
    )


def run_server(settings: Settings, *, run_jobs: bool = True, serve_api: bool = True) -> int:
    """`serve` (API and jobs), `api` (run_jobs=False) or `worker` (serve_api=False: the
    jobs, with only /healthz, /readyz and /metrics on the port for probes and scrapes).

    SIGTERM is uvicorn's graceful shutdown for all three: stop accepting, let requests in
    flight finish for up to the drain time, then the lifespan cancels the jobs (a job in
    the middle of a transaction rolls it back, which releases its claim)."""
    url = prepare_database(settings)
    config = uvicorn_config(settings, url, run_jobs=run_jobs, serve_api=serve_api)
    server = _Server(config)
    address = f"http://{settings.host}:{settings.port}"
    if serve_api:
        banner = (
            f"datavault listening on {address}\n"
            f"  create a first tenant and its admin API key:\n"
            f"    .venv/bin/datavault tenant create my-tenant\n"
            f"  then: curl -H 'Authorization: Bearer <key>' {address}/v1/api-keys"
        )
    else:
        banner = f"datavault worker running; /healthz, /readyz and /metrics on {address}"
    print(banner, file=sys.stderr, flush=True)
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal with the handler that
    # was installed before it started. A Python handler here turns that into a normal
    # return, so exit handlers run (they stop the embedded PostgreSQL).
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _note_signal)
    server.run()
    return 0 if server.started else 1


def _note_signal(signum: int, _frame: object) -> None:
    """Called once more after uvicorn's own shutdown; nothing left to do."""
