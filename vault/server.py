"""Running the HTTP server under uvicorn with the vault's own choices."""

from __future__ import annotations

import signal
import sys

import uvicorn

from vault.app import create_app
from vault.config import Settings
from vault.runtime import prepare_database


def uvicorn_config(
    settings: Settings, database_url: str, *, run_jobs: bool = True
) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings, database_url, run_jobs=run_jobs),
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
        timeout_graceful_shutdown=int(settings.drain_seconds),
        lifespan="on",
    )


def run_server(settings: Settings, *, run_jobs: bool = True) -> int:
    url = prepare_database(settings)
    config = uvicorn_config(settings, url, run_jobs=run_jobs)
    server = uvicorn.Server(config)
    print(
        f"datavault listening on http://{settings.host}:{settings.port}\n"
        f"  create a first tenant and its admin API key:\n"
        f"    .venv/bin/datavault tenant create my-tenant\n"
        f"  then: curl -H 'Authorization: Bearer <key>' "
        f"http://{settings.host}:{settings.port}/v1/api-keys",
        file=sys.stderr,
        flush=True,
    )
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal with the handler that
    # was installed before it started. A Python handler here turns that into a normal
    # return, so exit handlers run (they stop the embedded PostgreSQL).
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _note_signal)
    server.run()
    return 0 if server.started else 1


def _note_signal(signum: int, _frame: object) -> None:
    """Called once more after uvicorn's own shutdown; nothing left to do."""
