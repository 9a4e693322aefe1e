"""`keys rotate|new-epoch|retire-epoch`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vault.runtime import OperatorContext

from vault.cli.common import emit, run_operator
from vault.cli.errors import EXIT_OK


def _rotation_lines(report: Any) -> list[str]:
    return [
        f"tenant {r.tenant_id}: KEK version {r.new_version}, {r.rewrapped} subject keys "
        f"rewrapped, destroyed versions {list(r.destroyed_versions)}"
        for r in report.tenants
    ]


def _rotation_json(report: Any) -> dict[str, Any]:
    return {
        "epoch": report.epoch,
        "deployment_secrets_rewrapped": report.deployment_secrets_rewrapped,
        "tenants": [
            {"tenant_id": str(r.tenant_id), "kek_version": r.new_version,
             "rewrapped": r.rewrapped, "destroyed_versions": list(r.destroyed_versions)}
            for r in report.tenants
        ],
    }  # fmt: skip


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from vault.services.root_epochs import rotate_everything
    from vault.services.tenants import find_tenant

    async def work(ctx: OperatorContext) -> Any:
        tenants = [(await find_tenant(ctx.db, args.tenant)).id] if args.tenant else None
        return await rotate_everything(ctx.db, ctx.keyring, ctx.root, tenants)

    report = run_operator(args, work)
    emit(args, _rotation_json(report), "\n".join(_rotation_lines(report)) or "no tenants")
    return EXIT_OK


def cmd_keys_new_epoch(args: argparse.Namespace) -> int:
    from vault.services.root_epochs import start_new_epoch

    report = run_operator(args, lambda ctx: start_new_epoch(ctx.db, ctx.keyring, ctx.root))
    text = "\n".join([f"root key epoch {report.epoch} started", *_rotation_lines(report)])
    emit(args, _rotation_json(report), text)
    return EXIT_OK


def cmd_keys_retire_epoch(args: argparse.Namespace) -> int:
    from vault.services.root_epochs import retire_epoch

    state = run_operator(
        args,
        lambda ctx: retire_epoch(ctx.db, ctx.root, args.epoch, ctx.settings.backup_retention_days),
    )
    data = {"epoch": state.epoch, "retired_at": state.retired_at}
    emit(args, data, f"root key epoch {state.epoch} retired: its root key is destroyed")
    return EXIT_OK
