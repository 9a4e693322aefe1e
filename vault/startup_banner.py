"""What `datavault serve` (and `api`, `worker`) tells the person who started it, on
stderr, once the server listens: a root key created just now, the URL, and how to make
a first tenant while there is none. The JSON log on stdout says the same for machines."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_RULE = "=" * 72


def root_key_created_block(path: Path) -> str:
    """The warning for a local root key file created by this start."""
    return "\n".join(
        [
            _RULE,
            f"  ROOT KEY CREATED: {path.absolute()}",
            "",
            "  Losing this file loses every tenant's data: nothing can decrypt it again.",
            "  A backup that holds both this file and the data directory can undo every",
            "  shred: keep the key out of the data directory's backups.",
            "  In production use AWS KMS (DATAVAULT_ROOT_KEY=aws-kms:<key id or ARN>),",
            "  or a key file kept outside the data directory and its backups.",
            _RULE,
        ]
    )


def cli_name() -> str:
    """How the operator started datavault: `.venv/bin/datavault` under `make run`, else
    `datavault`."""
    invoked = sys.argv[0] if sys.argv else ""
    if os.path.basename(invoked) == "datavault":
        return invoked
    return "datavault"


def listening_lines(url: str, *, serve_api: bool, first_tenant_hint: bool) -> list[str]:
    if not serve_api:
        return [f"datavault worker running; /healthz, /readyz and /metrics on {url}"]
    lines = [f"datavault listening on {url}"]
    if first_tenant_hint:
        lines += [
            "  no tenant yet; create one and its first admin API key:",
            f"    {cli_name()} tenant create my-tenant",
            f"  then: curl -H 'Authorization: Bearer <key>' {url}/v1/api-keys",
        ]
    return lines
