"""`datavault tenant create` refusals: a clear one-line message, no traceback, no key.

Run as the operator runs it (a process of its own) against a database of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from vault.config import Settings


def _tenant_create(vault: Settings, slug: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAVAULT_", "DATABASE_URL"))}
    assert vault.database_url is not None
    return subprocess.run(
        [sys.executable, "-m", "vault", "tenant", "create", slug, "--json",
         "--database-url", vault.database_url, "--data-dir", str(vault.data_dir)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_duplicate_slug_exits_1_with_a_message_and_no_second_key(private_vault: Settings) -> None:
    first = _tenant_create(private_vault, "acme")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["slug"] == "acme"

    again = _tenant_create(private_vault, "acme")
    assert again.returncode == 1
    # --json: the error is the one JSON line on stdout (vault/cli/errors.py).
    assert json.loads(again.stdout) == {
        "error": "a tenant with slug 'acme' exists already",
        "exit_code": 1,
    }
    assert "Traceback" not in again.stderr


def test_invalid_slug_exits_2_with_the_rule_and_no_traceback(private_vault: Settings) -> None:
    for slug in ("Acme Corp", "acme_corp", "a", "x" * 64):
        refused = _tenant_create(private_vault, slug)
        assert refused.returncode == 2, (slug, refused.stderr)
        [line] = refused.stdout.splitlines()
        answer = json.loads(line)
        assert answer["exit_code"] == 2
        assert answer["error"].startswith("slug must be 2-63 characters")
        assert "Traceback" not in refused.stderr
    # Checked before anything starts: no root key was created for a refused slug.
    assert not (private_vault.data_dir / "root.key").exists()
