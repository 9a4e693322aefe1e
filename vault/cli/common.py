"""What every command shares: settings from flags, output, running against the vault."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vault.runtime import OperatorContext

from vault.cli.errors import CommandError
from vault.config import Settings, check_settings, settings_from_env

# Flags of serve/api/worker: (flag, Settings field, help). The environment variables of
# config.ENVIRONMENT are read first; a flag overrides its variable.
SERVER_FLAGS: tuple[tuple[str, str, type, str], ...] = (
    ("--data-dir", "data_dir", str, "data directory (DATAVAULT_DATA_DIR)"),
    ("--host", "host", str, "address to bind (DATAVAULT_HOST)"),
    ("--port", "port", int, "port to bind (DATAVAULT_PORT)"),
    ("--database-url", "database_url", str, "PostgreSQL URL (DATABASE_URL)"),
    ("--root-key", "root_key", str, "file:PATH or aws-kms:KEY (DATAVAULT_ROOT_KEY)"),
    ("--drain-seconds", "drain_seconds", float, "SIGTERM drain time (DATAVAULT_DRAIN_SECONDS)"),
)


def emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, default=str) if args.json else text)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The environment's settings with the command's flags on top (a flag wins)."""
    settings = settings_from_env()
    overrides = {field: getattr(args, field, None) for _, field, _, _ in SERVER_FLAGS}
    if args.data_dir is not None:
        overrides["data_dir"] = Path(args.data_dir)
    settings = settings.with_overrides(**overrides)
    check_settings(settings)
    return settings


def run_operator(
    args: argparse.Namespace,
    work: Callable[[OperatorContext], Awaitable[Any]],
    *,
    create_vault: bool = False,
) -> Any:
    """Run `work` against the vault the settings name. Only `tenant create` may create
    that vault; every other command exits 2 where there is none (vault/db/presence.py)."""
    from vault.runtime import operator_context, prepare_database

    settings = settings_from_args(args)
    url = prepare_database(settings, create_vault=create_vault)

    async def run() -> Any:
        async with operator_context(settings, url) as ctx:
            return await work(ctx)

    return asyncio.run(run())


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("a positive number of seconds")
    return value


def read_json_file(path: str, what: str) -> Any:
    """The parsed file; CommandError if unreadable or not JSON (exit 2)."""
    from vault.services.receipt_verify import load_receipt_json

    try:
        return load_receipt_json(Path(path).read_bytes())
    except OSError as exc:
        raise CommandError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CommandError(f"{what} {path} is not JSON: {exc}") from None
