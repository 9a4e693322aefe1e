"""`datavault-client verify-receipt RECEIPT.json --jwks KEYS.json`: check an erasure
receipt offline. Exit 0 and a summary when it holds, 1 when it does not, 2 when a file
cannot be read."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from datavault_client.errors import ReceiptInvalid
from datavault_client.receipts import verify_receipt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="datavault-client")
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify-receipt", help="verify an erasure receipt offline")
    verify.add_argument("receipt", type=Path, help="the receipt document (JSON) as fetched")
    verify.add_argument("--jwks", type=Path, required=True, help="the deployment's JWK set")
    verify.add_argument("--issuer", help="the deployment's public URL the receipt must name")
    verify.add_argument("--erasure-id", help="the erasure the receipt must be about")
    args = parser.parse_args(argv)
    try:
        document = args.receipt.read_bytes()
        keys = args.jwks.read_bytes()
    except OSError as exc:
        print(f"cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        verified = verify_receipt(document, keys, issuer=args.issuer, erasure_id=args.erasure_id)
    except ReceiptInvalid as exc:
        print(f"receipt INVALID: {exc}", file=sys.stderr)
        return 1
    summary = {
        "valid": True,
        "erasure_id": verified.erasure_id,
        "issuer": verified.issuer,
        "final": verified.final,
        "completed_at": verified.completed_at.isoformat() if verified.completed_at else None,
        "shredded": sorted({str(s.get("category")) for s in verified.shredded}),
        "held": sorted({str(h.get("category")) for h in verified.held}),
        "key_id": verified.key_id,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
