"""`tenant create|list`, `api-key create`, `check deletion`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vault.runtime import OperatorContext

from vault.cli.common import emit, run_operator
from vault.cli.errors import EXIT_FAILED_CHECK, EXIT_OK


def cmd_tenant_create(args: argparse.Namespace) -> int:
    from vault.services.tenants import check_slug, create_tenant

    check_slug(args.slug)  # before the database starts or a root key is created
    created = run_operator(
        args,
        lambda ctx: create_tenant(ctx.db, ctx.root, ctx.api_keys, args.slug, args.owner),
        create_vault=True,
    )
    data = {
        "tenant_id": str(created.id),
        "slug": created.slug,
        "api_key": created.admin_key.reveal(),
    }
    emit(
        args,
        data,
        f"tenant {created.slug} created: {created.id}\n"
        f"first admin API key (shown once, store it now):\n{created.admin_key.reveal()}",
    )
    return EXIT_OK


def cmd_tenant_list(args: argparse.Namespace) -> int:
    from vault.services.tenants import list_tenants

    tenants = run_operator(args, lambda ctx: list_tenants(ctx.db))
    rows = [
        {
            "tenant_id": str(t.id),
            "slug": t.slug,
            "status": t.status,
            "created_at": t.created_at.isoformat(),
        }
        for t in tenants
    ]
    emit(
        args,
        {"tenants": rows},
        "\n".join(f"{r['slug']}\t{r['tenant_id']}\t{r['status']}" for r in rows),
    )
    return EXIT_OK


def cmd_api_key_create(args: argparse.Namespace) -> int:
    """The operator's way back in for a tenant that lost its admin keys (API.md)."""
    from vault.domain.scopes import parse_scopes
    from vault.services.tenants import find_tenant

    scopes = parse_scopes(s.strip() for s in args.scopes.split(","))

    async def work(ctx: OperatorContext) -> Any:
        tenant = await find_tenant(ctx.db, args.tenant)
        return tenant, await ctx.api_keys.create(
            tenant.id, name=args.name, scopes=scopes, owner=args.owner
        )

    tenant, created = run_operator(args, work)
    data = {"tenant_id": str(tenant.id), "key_id": str(created.id), "prefix": created.prefix,
            "scopes": sorted(created.scopes), "owner": created.owner,
            "api_key": created.token.reveal()}  # fmt: skip
    emit(
        args,
        data,
        f"API key {created.prefix} ({', '.join(sorted(created.scopes))}) created for "
        f"{tenant.slug}, held by {created.owner}\n"
        f"(shown once, store it now):\n{created.token.reveal()}",
    )
    return EXIT_OK


def cmd_check_deletion(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from workers.deletion_check import find_deletion_violations

    grace = timedelta(seconds=args.grace_seconds)
    violations = run_operator(args, lambda ctx: find_deletion_violations(ctx.db, grace=grace))
    data = {
        "ok": not violations,
        "violations": [
            {"kind": v.kind, "tenant_id": str(v.tenant_id) if v.tenant_id else None,
             "detail": v.detail}
            for v in violations
        ],
    }  # fmt: skip
    text = "\n".join(v.describe() for v in violations) or "deletion invariants hold"
    emit(args, data, text)
    return EXIT_FAILED_CHECK if violations else EXIT_OK
