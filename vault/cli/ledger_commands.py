"""`receipt verify`, `ledger verify|compact`: erasure receipts and the shred ledger."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vault.runtime import OperatorContext

from vault.cli.common import emit, read_json_file, run_operator
from vault.cli.errors import EXIT_FAILED_CHECK, EXIT_OK, CommandError, failed_check

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
    return read_json_file(path, "receipt")


def cmd_receipt_verify(args: argparse.Namespace) -> int:
    """Never opens a database: the key set comes from --jwks FILE, or from the running
    deployment at --url (DATAVAULT_PUBLIC_URL), never from a URL the receipt names."""
    from vault.receipt_key_set import fetch_receipt_keys
    from vault.services.receipt_verify import ReceiptInvalid, verify_receipt

    try:
        document = _read_receipt_file(args.file)
        if args.jwks is not None:
            jwks = read_json_file(args.jwks, "key set")
        else:
            jwks = fetch_receipt_keys(args.url or os.environ.get("DATAVAULT_PUBLIC_URL"))
        verified = verify_receipt(document, jwks)
    except ReceiptInvalid as exc:
        emit(args, failed_check({"valid": False}, str(exc)), f"invalid receipt: {exc}")
        return EXIT_FAILED_CHECK
    receipt = verified.receipt
    kind = "final" if receipt.get("final") is True else "interim"
    data = {"valid": True, "erasure_id": receipt.get("erasure_id"), "final": kind == "final",
            "key_id": verified.key_id, "receipt": receipt}  # fmt: skip
    text = f"valid receipt for erasure {receipt.get('erasure_id')} ({kind}), signed by "
    emit(args, data, text + verified.key_id)
    return EXIT_OK


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    from vault.services.ledger import LedgerError, locate_head, verify_ledger
    from vault.services.ledger_watermark import watermark_for
    from vault.services.receipt_verify import ReceiptInvalid, verify_signed_receipt
    from vault.services.receipts import published_keys

    documents = [(path, read_json_file(path, "receipt")) for path in args.receipt or []]

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

    result = run_operator(args, work)
    if isinstance(result, str):
        data = failed_check({"ok": False, "problem": result}, f"shred ledger broken: {result}")
        emit(args, data, f"shred ledger BROKEN: {result}")
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
    emit(args, data, "\n".join(lines))
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

    report = run_operator(args, work)
    if isinstance(report, str):
        data = failed_check({"ok": False, "problem": report}, f"shred ledger broken: {report}")
        emit(args, data, f"shred ledger BROKEN, nothing folded: {report}")
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
    emit(args, data, text)
    return EXIT_OK
