"""Running the HTTP server under uvicorn with the vault's own choices."""

from __future__ import annotations

import asyncio
import gc
import signal
import socket
import sys
from collections.abc import Awaitable, Callable

import structlog
import uvicorn

from crypto.providers import local_key_path
from vault.blobs.factory import open_blob_store
from vault.config import ConfigError, Settings
from vault.http.edge_limits import LimitedHttpToolsProtocol
from vault.malloc_tuning import tune_malloc
from vault.runtime import prepare_database
from vault.services.tenants import list_tenants
from vault.startup_banner import listening_lines, root_key_created_block

log = structlog.get_logger("datavault.server")

# A full (generation 2) garbage collection walks every object the process holds: 35-40
# ms on the load bench, during which no request moves (it was the p99). What start-up
# allocated (modules, the app, pools) lives as long as the process, so it is frozen out
# of collections (gc.freeze); young collections run every GC_YOUNG_THRESHOLD allocations
# rather than 700, fewer pauses for a little memory.
GC_YOUNG_THRESHOLD = 20_000


class _Server(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, announce: Callable[[_Server], Awaitable[None]]
    ) -> None:
        super().__init__(config)
        self._announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        # Only now do the sockets accept connections: the URL is printed once it works.
        await self._announce(self)

    @property
    def bound_port(self) -> int:
        port: int = self.servers[0].sockets[0].getsockname()[1]
        return port


def uvicorn_config(
    settings: Settings, database_url: str, *, run_jobs: bool = True, serve_api: bool = True
) -> uvicorn.Config:
    # Imported here, not at the top: the application (every route, the console's templates,
    # the services behind them) costs ~0.3 s of CPU to import, which `api` and `worker` need
    # not pay when they exit 2 at once (no vault, settings refused, an unlocked ledger).
    from vault.app import create_app

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


def run_server(
    settings: Settings, *, run_jobs: bool = True, serve_api: bool = True, create_vault: bool = False
) -> int:
    """`serve` (API and jobs), `api` (run_jobs=False) or `worker` (serve_api=False: the
    jobs, with only /healthz, /readyz and /metrics on the port for probes and scrapes).

    SIGTERM is uvicorn's graceful shutdown for all three: stop accepting, let requests in
    flight finish for up to the drain time, then the lifespan cancels the jobs (a job in
    the middle of a transaction rolls it back, which releases its claim).

    Only `serve` creates a vault where there is none (create_vault); `api` and `worker`
    exit 2 instead, so production runs `datavault migrate` first."""
    tune_malloc()
    url = prepare_database(settings, create_vault=create_vault)
    asyncio.run(refuse_unlocked_ledger(settings))
    key_file = local_key_path(settings.root_key_uri, settings.data_dir)
    new_key_file = key_file if key_file is not None and not key_file.exists() else None
    config = uvicorn_config(settings, url, run_jobs=run_jobs, serve_api=serve_api)

    async def announce(server: _Server) -> None:
        lines = []
        if new_key_file is not None and new_key_file.exists():
            lines.append(root_key_created_block(new_key_file))
        hint = serve_api and not await _has_tenant(config)
        address = f"http://{settings.host}:{server.bound_port}"
        lines += listening_lines(address, serve_api=serve_api, first_tenant_hint=hint)
        print("\n".join(lines), file=sys.stderr, flush=True)

    server = _Server(config, announce)
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal with the handler that
    # was installed before it started. A Python handler here turns that into a normal
    # return, so exit handlers run (they stop the embedded PostgreSQL).
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _note_signal)
    server.run()
    return 0 if server.started else 1


async def refuse_unlocked_ledger(settings: Settings) -> None:
    """DESIGN.md: on S3 the production commands refuse a bucket without Object Lock, where
    whoever may delete objects could cut the shred ledger's tail, unless the operator
    accepts that weaker guarantee (DATAVAULT_ACCEPT_UNLOCKED_LEDGER=true). The filesystem
    store is for trying the vault out; there the root-key store's watermark detects a
    cut ledger (vault/services/ledger_watermark.py)."""
    if not settings.s3_bucket or settings.accept_unlocked_ledger:
        return
    store = open_blob_store(settings)
    try:
        locked = await store.retention_enforced()
    finally:
        await store.close()
    if not locked:
        raise ConfigError(
            f"the S3 bucket {settings.s3_bucket!r} has no Object Lock, so the shred ledger "
            "could be cut by whoever may delete its objects; create the bucket with Object "
            "Lock, or accept the weaker guarantee with DATAVAULT_ACCEPT_UNLOCKED_LEDGER=true"
        )


async def _has_tenant(config: uvicorn.Config) -> bool:
    """Whether the vault has a tenant yet (the first-tenant hint is shown until it has)."""
    try:
        return bool(await list_tenants(config.app.state.vault.db))  # type: ignore[union-attr]
    except Exception as exc:  # a hint is not worth failing a start over
        log.warning("tenant_check_failed", error_type=type(exc).__name__)
        return True


def _note_signal(signum: int, _frame: object) -> None:
    """Called once more after uvicorn's own shutdown; nothing left to do."""
