"""`datavault`: the operator's command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vault.config import ENVIRONMENT, ConfigError, Settings, settings_from_env
from vault.errors import UnknownTenant, VaultError

EXIT_OK, EXIT_FAILED_CHECK, EXIT_USAGE = 0, 1, 2

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


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, default=str) if args.json else text)


def _settings(args: argparse.Namespace) -> Settings:
    settings = settings_from_env()
    overrides = {field: getattr(args, field, None) for _, field, _, _ in SERVER_FLAGS}
    if args.data_dir is not None:
        overrides["data_dir"] = Path(args.data_dir)
    return settings.with_overrides(**overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    from vault.server import run_server

    return run_server(_settings(args))


def cmd_migrate(args: argparse.Namespace) -> int:
    from vault.db.migrate import migrate
    from vault.runtime import database_url

    applied = asyncio.run(migrate(database_url(_settings(args))))
    names = [f"{m.version:04d}_{m.name}" for m in applied]
    _emit(args, {"applied": names}, "\n".join(f"applied {n}" for n in names) or "up to date")
    return EXIT_OK


def cmd_tenant_create(args: argparse.Namespace) -> int:
    from vault.runtime import operator_context, prepare_database
    from vault.services.tenants import create_tenant

    settings = _settings(args)
    url = prepare_database(settings)

    async def run() -> Any:
        async with operator_context(settings, url) as ctx:
            return await create_tenant(ctx.db, ctx.root, ctx.api_keys, args.slug)

    created = asyncio.run(run())
    data = {
        "tenant_id": str(created.id),
        "slug": created.slug,
        "api_key": created.admin_key.reveal(),
    }
    _emit(
        args,
        data,
        f"tenant {created.slug} created: {created.id}\n"
        f"first admin API key (shown once, store it now):\n{created.admin_key.reveal()}",
    )
    return EXIT_OK


def cmd_tenant_list(args: argparse.Namespace) -> int:
    from vault.runtime import operator_context, prepare_database
    from vault.services.tenants import list_tenants

    settings = _settings(args)
    url = prepare_database(settings)

    async def run() -> Any:
        async with operator_context(settings, url) as ctx:
            return await list_tenants(ctx.db)

    tenants = asyncio.run(run())
    rows = [
        {
            "tenant_id": str(t.id),
            "slug": t.slug,
            "status": t.status,
            "created_at": t.created_at.isoformat(),
        }
        for t in tenants
    ]
    _emit(
        args,
        {"tenants": rows},
        "\n".join(f"{r['slug']}\t{r['tenant_id']}\t{r['status']}" for r in rows),
    )
    return EXIT_OK


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from vault.runtime import operator_context, prepare_database
    from vault.services.access_anchor import AnchorInvalid, all_chains, read_anchor
    from vault.services.access_audit import ChainReport, verify_chain
    from vault.services.tenants import find_tenant, list_tenants

    settings = _settings(args)
    url = prepare_database(settings)

    async def run() -> Any:
        async with operator_context(settings, url) as ctx:
            if args.tenant:
                chains = [(await find_tenant(ctx.db, args.tenant)).id]
            else:
                chains = all_chains([t.id for t in await list_tenants(ctx.db)])
            reports = []
            for tenant_id in chains:
                try:
                    anchor = await read_anchor(
                        ctx.blobs, ctx.secrets.access_log_anchor_key, tenant_id
                    )
                except AnchorInvalid:
                    reports.append(
                        ChainReport(tenant_id, 0, False, None, "anchor MAC does not verify")
                    )
                    continue
                reports.append(await verify_chain(ctx.db, tenant_id, anchor))
            return reports

    reports = asyncio.run(run())
    bad = [r for r in reports if not r.ok]
    data = {
        "ok": not bad,
        "chains": [
            {"tenant_id": str(r.tenant_id), "rows": r.rows, "ok": r.ok,
             "first_bad_seq": r.first_bad_seq, "problem": r.problem}
            for r in reports
        ],
    }  # fmt: skip
    lines = [
        f"{r.tenant_id}: {r.rows} rows ok" if r.ok
        else f"{r.tenant_id}: BROKEN at row {r.first_bad_seq}: {r.problem}"
        for r in reports
    ]  # fmt: skip
    _emit(args, data, "\n".join(lines))
    return EXIT_FAILED_CHECK if bad else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="datavault", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(
        parent: Any, name: str, handler: Callable[[argparse.Namespace], int], help_text: str
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help_text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        for flag, field, kind, flag_help in SERVER_FLAGS:
            p.add_argument(flag, dest=field, type=kind, default=None, help=flag_help)
        p.set_defaults(handler=handler)
        return p

    command(sub, "serve", cmd_serve, "API and workers in one process")
    command(sub, "api", cmd_serve, "the API only (workers run as `datavault worker`)")
    command(sub, "migrate", cmd_migrate, "apply pending database migrations")

    tenant = sub.add_parser("tenant", help="tenants").add_subparsers(
        dest="tenant_command", required=True
    )
    create = command(tenant, "create", cmd_tenant_create, "create a tenant and its first admin key")
    create.add_argument("slug")
    command(tenant, "list", cmd_tenant_list, "list tenants")

    audit = sub.add_parser("audit", help="access log").add_subparsers(
        dest="audit_command", required=True
    )
    verify = command(audit, "verify", cmd_audit_verify, "verify the access-log hash chains")
    verify.add_argument("--tenant", metavar="SLUG")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vault.observability.logging import configure_logging

    configure_logging("warning" if args.command not in ("serve", "api") else "info")
    try:
        code: int = args.handler(args)
        return code
    except UnknownTenant as exc:
        print(f"datavault: {exc.detail}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"datavault: configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VaultError as exc:
        print(f"datavault: {exc.detail or type(exc).__name__}", file=sys.stderr)
        return EXIT_FAILED_CHECK


__all__ = ["ENVIRONMENT", "main"]
