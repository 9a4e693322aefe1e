"""`--json` errors are JSON too: one object line `{"error", "exit_code"}` on stdout, with
the exit codes of the text form (2 for unusable input or settings, 1 for a failed check).
And `datavault --version`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from vault.config import Settings


def _datavault(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    prefixes = ("DATAVAULT_", "DATABASE_URL")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return subprocess.run(
        [sys.executable, "-m", "vault", *args],
        env={**clean, **env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _vault_flags(vault: Settings) -> list[str]:
    assert vault.database_url is not None
    return ["--database-url", vault.database_url, "--data-dir", str(vault.data_dir)]


def _json_error(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    [line] = result.stdout.splitlines()
    answer: dict[str, Any] = json.loads(line)
    assert answer["exit_code"] == result.returncode
    assert "Traceback" not in result.stderr
    return answer


def test_version_prints_the_distribution_version(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vault", "--version"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    assert result.returncode == 0
    assert result.stdout == f"datavault {metadata.version('datavault')}\n"
    assert list(tmp_path.iterdir()) == []


def test_unknown_tenant_and_epoch_are_json_errors_with_exit_2(private_vault: Settings) -> None:
    flags = _vault_flags(private_vault)
    assert _datavault("tenant", "create", "acme", "--json", *flags).returncode == 0
    unknown = _datavault("audit", "verify", "--tenant", "nosuch", "--json", *flags)
    assert unknown.returncode == 2
    assert "nosuch" in _json_error(unknown)["error"]
    as_text = _datavault("audit", "verify", "--tenant", "nosuch", *flags)
    assert as_text.returncode == 2
    assert as_text.stdout == ""
    assert as_text.stderr.splitlines() == [f"datavault: {_json_error(unknown)['error']}"]
    epoch = _datavault("keys", "retire-epoch", "99", "--json", *flags)
    assert epoch.returncode == 2
    assert "99" in _json_error(epoch)["error"]


@pytest.mark.parametrize("command", [["tenant", "list"], ["serve"], ["keys", "rotate"]])
def test_bad_settings_are_json_errors_with_exit_2(tmp_path: Path, command: list[str]) -> None:
    result = _datavault(
        *command, "--json", "--data-dir", str(tmp_path / "data"), DATAVAULT_PORT="eighty"
    )
    assert result.returncode == 2
    assert _json_error(result)["error"].startswith("configuration: DATAVAULT_PORT: ")
    assert not (tmp_path / "data").exists()


def test_a_command_line_that_does_not_parse_is_a_json_error() -> None:
    result = _datavault("keys", "retire-epoch", "first", "--json")
    assert result.returncode == 2
    assert _json_error(result) == {
        "error": "datavault keys retire-epoch: argument epoch: invalid int value: 'first'",
        "exit_code": 2,
    }
    as_text = _datavault("keys", "retire-epoch", "first")
    assert as_text.returncode == 2
    assert as_text.stderr.startswith("usage: datavault keys retire-epoch")
    assert as_text.stderr.splitlines()[-1] == (
        "datavault keys retire-epoch: error: argument epoch: invalid int value: 'first'"
    )


def test_a_failed_check_carries_error_and_exit_code_in_its_report(
    private_vault: Settings,
) -> None:
    flags = _vault_flags(private_vault)
    ok = _datavault("ledger", "verify", "--json", *flags)
    assert ok.returncode == 0, ok.stderr
    assert "error" not in json.loads(ok.stdout)

    async def claim_a_head_the_ledger_never_had() -> None:
        conn = await asyncpg.connect(private_vault.database_url)
        try:
            await conn.execute(
                "INSERT INTO ledger_head (singleton, seq, entry_hash) VALUES (true, 3, $1) "
                "ON CONFLICT (singleton) DO UPDATE SET seq = 3, entry_hash = $1",
                bytes(32),
            )
        finally:
            await conn.close()

    asyncio.run(claim_a_head_the_ledger_never_had())
    broken = _datavault("ledger", "verify", "--json", *flags)
    assert broken.returncode == 1
    report = _json_error(broken)
    assert report["ok"] is False
    assert report["error"] == f"shred ledger broken: {report['problem']}"
