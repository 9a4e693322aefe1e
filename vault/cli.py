"""`datavault`: the operator's command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vault.runtime import OperatorContext

from crypto.errors import KeyUnavailableError
from vault.cli_errors import (
    EXIT_FAILED_CHECK,
    EXIT_OK,
    EXIT_USAGE,
    ArgumentsRefused,
    CliParser,
    CommandError,
    failed_check,
    report_error,
)
from vault.config import ENVIRONMENT, ConfigError, Settings, check_settings, settings_from_env
from vault.db.presence import NoVault
from vault.domain.api_keys import FIRST_KEY_OWNER
from vault.errors import InvalidInput, UnknownEpoch, UnknownTenant, VaultError
from vault.version import distribution_version

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


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The environment's settings with the command's flags on top (a flag wins)."""
    settings = settings_from_env()
    overrides = {field: getattr(args, field, None) for _, field, _, _ in SERVER_FLAGS}
    if args.data_dir is not None:
        overrides["data_dir"] = Path(args.data_dir)
    settings = settings.with_overrides(**overrides)
    check_settings(settings)
    return settings


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
    _emit(args, {"applied": names}, "\n".join(f"applied {n}" for n in names) or "up to date")
    return EXIT_OK


def cmd_tenant_create(args: argparse.Namespace) -> int:
    from vault.services.tenants import check_slug, create_tenant

    check_slug(args.slug)  # before the database starts or a root key is created
    created = _run_operator(
        args,
        lambda ctx: create_tenant(ctx.db, ctx.root, ctx.api_keys, args.slug, args.owner),
        create_vault=True,
    )
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
    from vault.services.tenants import list_tenants

    tenants = _run_operator(args, lambda ctx: list_tenants(ctx.db))
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

    tenant, created = _run_operator(args, work)
    data = {"tenant_id": str(tenant.id), "key_id": str(created.id), "prefix": created.prefix,
            "scopes": sorted(created.scopes), "owner": created.owner,
            "api_key": created.token.reveal()}  # fmt: skip
    _emit(
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
    violations = _run_operator(args, lambda ctx: find_deletion_violations(ctx.db, grace=grace))
    data = {
        "ok": not violations,
        "violations": [
            {"kind": v.kind, "tenant_id": str(v.tenant_id) if v.tenant_id else None,
             "detail": v.detail}
            for v in violations
        ],
    }  # fmt: skip
    text = "\n".join(v.describe() for v in violations) or "deletion invariants hold"
    _emit(args, data, text)
    return EXIT_FAILED_CHECK if violations else EXIT_OK


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("a positive number of seconds")
    return value


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

    reports = _run_operator(args, work)
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
    _emit(args, data, "\n".join(lines))
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

    anchor = _run_operator(args, work)
    data = {"tenant_id": str(anchor.tenant_id), "anchor_seq": anchor.anchor_seq,
            "seq": anchor.seq, "anchored_at": anchor.anchored_at.isoformat()}  # fmt: skip
    _emit(
        args,
        data,
        f"{anchor.tenant_id}: re-anchored at row {anchor.seq} (anchor {anchor.anchor_seq}); "
        "verify reports what was wrong before it as a note",
    )
    return EXIT_OK


def _run_operator(
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

    report = _run_operator(args, work)
    _emit(args, _rotation_json(report), "\n".join(_rotation_lines(report)) or "no tenants")
    return EXIT_OK


def cmd_keys_new_epoch(args: argparse.Namespace) -> int:
    from vault.services.root_epochs import start_new_epoch

    report = _run_operator(args, lambda ctx: start_new_epoch(ctx.db, ctx.keyring, ctx.root))
    text = "\n".join([f"root key epoch {report.epoch} started", *_rotation_lines(report)])
    _emit(args, _rotation_json(report), text)
    return EXIT_OK


def _read_json_file(path: str, what: str) -> Any:
    """The parsed file; CommandError if unreadable or not JSON (exit 2)."""
    from vault.services.receipt_verify import load_receipt_json

    try:
        return load_receipt_json(Path(path).read_bytes())
    except OSError as exc:
        raise CommandError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CommandError(f"{what} {path} is not JSON: {exc}") from None


# A file holding only a receipt's compact JWS (its `jws`, saved on its own).
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def _read_receipt_file(path: str) -> Any:
    """The signed document (JSON), or the bare compact JWS the file holds."""
    try:
        text = Path(path).read_bytes().strip()
    except OSError as exc:
        raise CommandError(f"cannot read receipt {path}: {exc.strerror or exc}") from None
    if _COMPACT_JWS.fullmatch(text.decode("ascii", "replace")):
        return text.decode("ascii")
    return _read_json_file(path, "receipt")


def cmd_receipt_verify(args: argparse.Namespace) -> int:
    """Never opens a database: the key set comes from --jwks FILE, or from the running
    deployment at --url (DATAVAULT_PUBLIC_URL), never from a URL the receipt names."""
    from vault.receipt_key_set import fetch_receipt_keys
    from vault.services.receipt_verify import ReceiptInvalid, verify_receipt

    try:
        document = _read_receipt_file(args.file)
        if args.jwks is not None:
            jwks = _read_json_file(args.jwks, "key set")
        else:
            jwks = fetch_receipt_keys(args.url or os.environ.get("DATAVAULT_PUBLIC_URL"))
        verified = verify_receipt(document, jwks)
    except ReceiptInvalid as exc:
        _emit(args, failed_check({"valid": False}, str(exc)), f"invalid receipt: {exc}")
        return EXIT_FAILED_CHECK
    receipt = verified.receipt
    kind = "final" if receipt.get("final") is True else "interim"
    data = {"valid": True, "erasure_id": receipt.get("erasure_id"), "final": kind == "final",
            "key_id": verified.key_id, "receipt": receipt}  # fmt: skip
    text = f"valid receipt for erasure {receipt.get('erasure_id')} ({kind}), signed by "
    _emit(args, data, text + verified.key_id)
    return EXIT_OK


def cmd_keys_retire_epoch(args: argparse.Namespace) -> int:
    from vault.services.root_epochs import retire_epoch

    state = _run_operator(
        args,
        lambda ctx: retire_epoch(ctx.db, ctx.root, args.epoch, ctx.settings.backup_retention_days),
    )
    data = {"epoch": state.epoch, "retired_at": state.retired_at}
    _emit(args, data, f"root key epoch {state.epoch} retired: its root key is destroyed")
    return EXIT_OK


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    from vault.services.ledger import LedgerError, locate_head, verify_ledger
    from vault.services.ledger_watermark import watermark_for
    from vault.services.receipt_verify import ReceiptInvalid, verify_signed_receipt
    from vault.services.receipts import published_keys

    documents = [(path, _read_json_file(path, "receipt")) for path in args.receipt or []]

    async def work(ctx: OperatorContext) -> Any:
        try:
            summary = await verify_ledger(ctx.db, ctx.blobs, watermark_for(ctx.root, ctx.blobs))
        except LedgerError as exc:
            return str(exc)
        jwks = await published_keys(ctx.db)
        receipts = []
        for path, document in documents:
            # The receipt's own signature first: a forged receipt proves nothing either way.
            try:
                ledger = verify_signed_receipt(document, jwks).get("ledger")
                if not isinstance(ledger, dict):
                    raise ReceiptInvalid("the receipt names no ledger head")
                seq, head = int(ledger["seq"]), bytes.fromhex(str(ledger["head"]))
                found = await locate_head(ctx.db, ctx.blobs, seq, head)
                receipts.append({"file": path, "seq": seq, "ok": True, "found_in": found})
            except (ReceiptInvalid, LedgerError, KeyError, TypeError, ValueError) as exc:
                receipts.append({"file": path, "ok": False, "problem": str(exc)})
        return summary, receipts

    result = _run_operator(args, work)
    if isinstance(result, str):
        data = failed_check({"ok": False, "problem": result}, f"shred ledger broken: {result}")
        _emit(args, data, f"shred ledger BROKEN: {result}")
        return EXIT_FAILED_CHECK
    summary, receipts = result
    lines = [
        f"shred ledger ok: {summary.objects} objects, {summary.entries} destroyed keys"
        + (
            f"; {summary.checkpoints} checkpoints fold entries 1-{summary.folded_through} "
            f"({summary.folded_entries} destroyed keys)"
            if summary.checkpoints
            else ""
        )
        + (
            f"; signed from entry {summary.signed_from}"
            if summary.signed_from is not None
            else "; no signed entry yet"
        )
    ]
    for r in receipts:
        lines.append(
            f"receipt {r['file']}: the ledger reached its head (entry {r['seq']}, {r['found_in']})"
            if r["ok"]
            else f"receipt {r['file']}: NOT SHOWN by the ledger: {r['problem']}"
        )
    data = {
        "ok": all(r["ok"] for r in receipts),
        "objects": summary.objects,
        "entries": summary.entries,
        "checkpoints": summary.checkpoints,
        "folded_through": summary.folded_through,
        "folded_entries": summary.folded_entries,
        "signed_from": summary.signed_from,
        "receipts": receipts,
    }
    if not data["ok"]:
        data = failed_check(data, "a receipt's ledger head is not in the shred ledger")
    _emit(args, data, "\n".join(lines))
    return EXIT_OK if data["ok"] else EXIT_FAILED_CHECK


def cmd_ledger_compact(args: argparse.Namespace) -> int:
    from vault.services.erasure_receipts import ReceiptIssuer
    from vault.services.ledger import LedgerError
    from vault.services.ledger_watermark import watermark_for
    from workers.ledger_compaction import compact_ledger

    async def work(ctx: OperatorContext) -> Any:
        issuer = await ReceiptIssuer.for_deployment(ctx.db, ctx.root, ctx.settings)
        try:
            return await compact_ledger(
                ctx.db, ctx.blobs, issuer, watermark=watermark_for(ctx.root, ctx.blobs),
                dry_run=args.dry_run, wait=True,
            )  # fmt: skip
        except LedgerError as exc:
            return str(exc)

    report = _run_operator(args, work)
    if isinstance(report, str):
        data = failed_check({"ok": False, "problem": report}, f"shred ledger broken: {report}")
        _emit(args, data, f"shred ledger BROKEN, nothing folded: {report}")
        return EXIT_FAILED_CHECK
    data = {
        "ok": True,
        "dry_run": report.dry_run,
        "checkpoints": list(report.checkpoints),
        "folded_objects": report.folded_objects,
        "folded_entries": report.folded_entries,
        "removed_objects": report.removed_objects,
        "folded_through": report.folded_through,
        "reason": report.reason,
    }
    would = "would fold" if report.dry_run else "folded"
    text = (
        f"{would} {report.folded_objects} ledger objects ({report.folded_entries} destroyed "
        f"keys) into {len(report.checkpoints)} checkpoints; the ledger is folded through "
        f"entry {report.folded_through}"
        if report.folded_objects
        else f"nothing to fold: {report.reason}"
    )
    if report.removed_objects:
        removed = "would remove" if report.dry_run else "removed"
        text += f"\n{removed} {report.removed_objects} folded objects"
    _emit(args, data, text)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="datavault", description=__doc__)
    parser.add_argument(
        "--version", action="version", version=f"datavault {distribution_version()}"
    )
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
    command(sub, "worker", cmd_worker, "the background jobs only (any number of them)")
    command(sub, "migrate", cmd_migrate, "apply pending database migrations")

    tenant = sub.add_parser("tenant", help="tenants").add_subparsers(
        dest="tenant_command", required=True
    )
    create = command(tenant, "create", cmd_tenant_create, "create a tenant and its first admin key")
    create.add_argument("slug")
    create.add_argument(
        "--owner", default=FIRST_KEY_OWNER, help="the person who holds the first admin key"
    )

    api_key = sub.add_parser("api-key", help="API keys").add_subparsers(
        dest="api_key_command", required=True
    )
    new_key = command(api_key, "create", cmd_api_key_create, "create an API key for a tenant")
    new_key.add_argument("--tenant", metavar="SLUG", required=True)
    new_key.add_argument("--scopes", required=True, help="comma-separated, e.g. admin")
    new_key.add_argument("--owner", required=True, help="the person who holds the key")
    new_key.add_argument("--name", default="created by the operator")

    invariants = sub.add_parser("check", help="invariants").add_subparsers(
        dest="check_command", required=True
    )
    deletion = command(
        invariants,
        "deletion",
        cmd_check_deletion,
        "check the deletion invariants (exit 1 if broken)",
    )
    deletion.add_argument(
        "--grace-seconds", type=float, default=900,
        help="what the jobs are about to do anyway is not reported before this (default 900)",
    )  # fmt: skip
    command(tenant, "list", cmd_tenant_list, "list tenants")

    audit = sub.add_parser("audit", help="access log").add_subparsers(
        dest="audit_command", required=True
    )
    verify = command(
        audit, "verify", cmd_audit_verify,
        "verify the access-log and disclosure hash chains and their anchors",
    )  # fmt: skip
    verify.add_argument("--tenant", metavar="SLUG")
    verify.add_argument(
        "--max-anchor-age", metavar="SECONDS", type=_positive_seconds, default=None,
        help="how old the newest anchor may be (default: three anchor intervals and 30 s, "
        "120 s, for a running deployment); for a stopped one, more than how long it has "
        "been stopped",
    )  # fmt: skip
    again = command(
        audit, "reanchor", cmd_audit_reanchor,
        "after an incident is recorded: anchor a chain afresh from its current head",
    )  # fmt: skip
    again.add_argument(
        "--tenant", metavar="SLUG", help="the tenant's chain (default: the deployment-wide one)"
    )

    receipt = sub.add_parser("receipt", help="erasure receipts").add_subparsers(
        dest="receipt_command", required=True
    )
    check = command(receipt, "verify", cmd_receipt_verify, "verify a signed erasure receipt")
    check.add_argument(
        "file", metavar="FILE", help="the signed receipt (JSON), or its compact JWS alone"
    )
    check.add_argument(
        "--jwks",
        metavar="FILE",
        help="verify offline against this JWK set (/.well-known/jwks.json)",
    )
    check.add_argument(
        "--url",
        metavar="URL",
        help="without --jwks: read the key set from this running deployment's "
        "/v1/receipt-keys (default DATAVAULT_PUBLIC_URL)",
    )

    ledger = sub.add_parser("ledger", help="shred ledger").add_subparsers(
        dest="ledger_command", required=True
    )
    verify_ledger = command(
        ledger, "verify", cmd_ledger_verify, "check the shred ledger's hash chain and checkpoints"
    )
    verify_ledger.add_argument(
        "--receipt", metavar="FILE", action="append",
        help="also check that the ledger reached the head this signed erasure receipt names "
        "(repeatable)",
    )  # fmt: skip
    compact = command(
        ledger, "compact", cmd_ledger_compact,
        "fold entries no restorable backup can need into a signed checkpoint",
    )  # fmt: skip
    compact.add_argument(
        "--dry-run", action="store_true", help="say what would fold; write and remove nothing"
    )

    keys = sub.add_parser("keys", help="key rotation").add_subparsers(
        dest="keys_command", required=True
    )
    rotate = command(
        keys, "rotate", cmd_keys_rotate, "new tenant KEK versions; rewrap subject keys"
    )
    rotate.add_argument("--tenant", metavar="SLUG")
    command(keys, "new-epoch", cmd_keys_new_epoch, "start a root key epoch and rewrap everything")
    retire = command(keys, "retire-epoch", cmd_keys_retire_epoch, "destroy an old root key")
    retire.add_argument("epoch", type=int)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    # Known before parsing, so a command line that does not parse is answered in JSON too.
    as_json = "--json" in arguments
    try:
        args = build_parser().parse_args(arguments)
    except ArgumentsRefused as exc:
        if not as_json:
            print(exc.usage + exc.argparse_line, file=sys.stderr)
            return exc.exit_code
        return report_error(exc.message, exc.exit_code, as_json=True)
    from vault.observability.logging import configure_logging

    serving = args.command in ("serve", "api", "worker")
    as_json = bool(getattr(args, "json", False))
    try:
        if serving:
            # Servers log at DATAVAULT_LOG_LEVEL (an unknown name is a ConfigError: exit 2).
            configure_logging(settings_from_args(args).log_level)
        else:
            # Operator commands: warnings only, on stderr, so stdout stays their output.
            configure_logging("warning", to_stderr=True)
        code: int = args.handler(args)
        return code
    except CommandError as exc:
        return report_error(exc.message, exc.exit_code, as_json=as_json)
    except (UnknownTenant, UnknownEpoch, InvalidInput) as exc:
        return report_error(exc.detail, EXIT_USAGE, as_json=as_json)
    except NoVault as exc:
        return report_error(str(exc), EXIT_USAGE, as_json=as_json)
    except ConfigError as exc:
        return report_error(f"configuration: {exc}", EXIT_USAGE, as_json=as_json)
    except KeyUnavailableError as exc:
        # The root key named by the settings cannot be used (missing, unreadable, mode).
        return report_error(f"root key: {exc}", EXIT_USAGE, as_json=as_json)
    except VaultError as exc:
        message = exc.detail or type(exc).__name__
        return report_error(message, EXIT_FAILED_CHECK, as_json=as_json)


__all__ = ["ENVIRONMENT", "main", "settings_from_args"]
