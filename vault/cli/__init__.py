"""`datavault`: the operator's command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from crypto.errors import KeyUnavailableError
from vault.cli.audit_commands import cmd_audit_reanchor, cmd_audit_verify
from vault.cli.common import SERVER_FLAGS, positive_seconds, settings_from_args
from vault.cli.errors import (
    EXIT_FAILED_CHECK,
    EXIT_USAGE,
    ArgumentsRefused,
    CliParser,
    CommandError,
    report_error,
)
from vault.cli.key_commands import cmd_keys_new_epoch, cmd_keys_retire_epoch, cmd_keys_rotate
from vault.cli.ledger_commands import cmd_ledger_compact, cmd_ledger_verify, cmd_receipt_verify
from vault.cli.server_commands import cmd_migrate, cmd_serve, cmd_worker
from vault.cli.tenant_commands import (
    cmd_api_key_create,
    cmd_check_deletion,
    cmd_tenant_create,
    cmd_tenant_list,
)
from vault.config import ConfigError
from vault.db.presence import NoVault
from vault.domain.api_keys import FIRST_KEY_OWNER
from vault.errors import InvalidInput, UnknownEpoch, UnknownTenant, VaultError
from vault.version import distribution_version


class _VersionAction(argparse.Action):
    """`--version`, with the version read when asked: reading it imports
    importlib.metadata (~0.03 s of CPU), which no other command needs."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(
            option_strings, dest, nargs=0, help="show program's version number and exit"
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(f"datavault {distribution_version()}")  # on stdout, as argparse's own
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="datavault", description=__doc__)
    parser.add_argument("--version", action=_VersionAction)
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
        "--max-anchor-age", metavar="SECONDS", type=positive_seconds, default=None,
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
    from vault.observability.structlog_first import import_structlog_without_rich

    # Here, not in vault/__init__.py: `--help`, `--version` and refused arguments log
    # nothing and need no structlog at all.
    import_structlog_without_rich()
    from vault.memory_off_disk import keep_memory_off_disk
    from vault.observability.logging import configure_logging

    keep_memory_off_disk()  # before anything holds a key
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


__all__ = ["SERVER_FLAGS", "build_parser", "main", "settings_from_args"]
