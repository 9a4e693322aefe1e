"""`serve`, `api`, `worker`, `migrate`."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

from vault.cli.common import emit, settings_from_args
from vault.cli.errors import EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from vault.server import run_server

    serve = args.command == "serve"  # `api` never creates a vault; `serve` may
    return run_server(settings_from_args(args), run_jobs=serve, create_vault=serve)


def cmd_worker(args: argparse.Namespace) -> int:
    from vault.server import run_server

    return run_server(settings_from_args(args), run_jobs=True, serve_api=False, create_vault=False)


def cmd_migrate(args: argparse.Namespace) -> int:
    from vault.db.migrate import migrate
    from vault.runtime import database_url

    applied = asyncio.run(migrate(database_url(settings_from_args(args))))
    names = [f"{m.version:04d}_{m.name}" for m in applied]
    emit(args, {"applied": names}, "\n".join(f"applied {n}" for n in names) or "up to date")
    return EXIT_OK
