"""`audit verify|reanchor`: the access log's hash chains and anchors."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vault.runtime import OperatorContext

from vault.cli.common import emit, run_operator
from vault.cli.errors import EXIT_FAILED_CHECK, EXIT_OK, failed_check


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from vault.services.access_anchor import MAX_ANCHOR_AGE_SECONDS
    from vault.services.access_audit import verify_chains
    from vault.services.tenants import find_tenant

    max_age = args.max_anchor_age or MAX_ANCHOR_AGE_SECONDS

    async def work(ctx: OperatorContext) -> Any:
        tenant = (await find_tenant(ctx.db, args.tenant)).id if args.tenant else None
        return await verify_chains(
            ctx.db, ctx.blobs, ctx.secrets.anchor_keys, tenant,
            max_anchor_age=max_age,
        )  # fmt: skip

    reports = run_operator(args, work)
    bad = [r for r in reports if not r.ok]
    data = {
        "ok": not bad,
        "max_anchor_age_seconds": max_age,
        "chains": [
            {"tenant_id": str(r.tenant_id), "rows": r.rows, "ok": r.ok,
             "first_bad_seq": r.first_bad_seq, "problem": r.problem, "anchors": r.anchors,
             "disclosures": r.disclosures, "first_bad_disclosure": r.first_bad_disclosure,
             "newest_anchor_at": r.newest_anchor_at.isoformat() if r.newest_anchor_at else None,
             "notes": list(r.notes)}
            for r in reports
        ],
    }  # fmt: skip
    lines = []
    for r in reports:
        if r.ok:
            lines.append(
                f"{r.tenant_id}: {r.rows} rows ok, {r.disclosures} disclosures ok, "
                f"{r.anchors} anchors"
            )
        elif r.first_bad_seq is not None:
            lines.append(f"{r.tenant_id}: BROKEN at row {r.first_bad_seq}: {r.problem}")
        elif r.first_bad_disclosure is not None:
            lines.append(
                f"{r.tenant_id}: BROKEN at disclosure {r.first_bad_disclosure}: {r.problem}"
            )
        else:
            lines.append(f"{r.tenant_id}: BROKEN (anchors): {r.problem}")
        lines.extend(f"  note: {note}" for note in r.notes)
    if bad:
        data = failed_check(data, f"access-log chain broken in {len(bad)} of {len(reports)}")
    emit(args, data, "\n".join(lines))
    return EXIT_FAILED_CHECK if bad else EXIT_OK


def cmd_audit_reanchor(args: argparse.Namespace) -> int:
    from vault.db.database import DEPLOYMENT_TENANT
    from vault.services.tenants import find_tenant
    from workers.access_anchor import reanchor

    async def work(ctx: OperatorContext) -> Any:
        chain = (await find_tenant(ctx.db, args.tenant)).id if args.tenant else DEPLOYMENT_TENANT
        return await reanchor(
            ctx.db, ctx.blobs, ctx.secrets.anchor_keys, chain,
            retain_days=ctx.settings.backup_retention_days,
        )  # fmt: skip

    anchor = run_operator(args, work)
    data = {"tenant_id": str(anchor.tenant_id), "anchor_seq": anchor.anchor_seq,
            "seq": anchor.seq, "anchored_at": anchor.anchored_at.isoformat()}  # fmt: skip
    emit(
        args,
        data,
        f"{anchor.tenant_id}: re-anchored at row {anchor.seq} (anchor {anchor.anchor_seq}); "
        "verify reports what was wrong before it as a note",
    )
    return EXIT_OK
