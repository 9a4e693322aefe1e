"""What a process imports to start: every CLI command and server pays for it, and the
suite starts hundreds. boto3 is needed only with an S3 bucket or AWS KMS configured, and
stream_zip (with pycryptodome and cffi's C parser behind it) only for an export. An
operator command needs none of the HTTP stack (the application, its console's templates,
the metrics), and no process needs rich, which structlog would import where installed."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

LAZY = ("boto3", "botocore", "stream_zip", "Crypto", "pycparser")


def test_the_server_and_the_cli_start_without_the_s3_kms_and_zip_libraries() -> None:
    probe = (
        "import json, sys, vault.app, vault.cli, workers.runner;"
        f"print(json.dumps([m for m in {LAZY!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == []


# What an operator command (`audit verify`, `ledger verify`, `tenant list`, ...) must not
# import: it answers from the database, never over HTTP, and logs JSON lines without rich;
# importlib.metadata (~0.03 s) only for `--version`.
NOT_FOR_A_COMMAND = (
    *LAZY, "rich", "pygments", "starlette", "uvicorn", "jinja2", "prometheus_client",
    "vault.app", "vault.http", "vault.console", "importlib.metadata",
)  # fmt: skip
ROOT = str(Path(__file__).resolve().parents[2])


def _run_main(cwd: Path, argv: list[str], watched: tuple[str, ...]) -> dict[str, Any]:
    """`datavault ARGV` in a process of its own, in `cwd`, with no vault configured: its
    exit code and which of `watched` it imported."""
    probe = (
        "import json, sys\n"
        "from vault.cli import main\n"
        "try:\n"
        f"    code = main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        f"print(json.dumps({{'code': code, 'loaded': [m for m in {watched!r} "
        "if m in sys.modules]}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAVAULT_", "DATABASE_URL"))}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, env={**env, "PYTHONPATH": ROOT},
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize(
    "argv",
    [["audit", "verify", "--help"], ["audit", "verify"], ["ledger", "verify"], ["tenant", "list"]],
    ids=" ".join,
)
def test_an_operator_command_imports_neither_the_http_stack_nor_rich(
    tmp_path: Path, argv: list[str]
) -> None:
    # With no vault the command exits 2 after reading its settings, logging set up.
    ran = _run_main(tmp_path, argv, NOT_FOR_A_COMMAND)
    assert ran["code"] == (0 if "--help" in argv else 2)
    assert ran["loaded"] == []


@pytest.mark.parametrize("command", ["api", "worker"])
def test_api_and_worker_import_the_application_only_once_the_vault_is_found(
    tmp_path: Path, command: str
) -> None:
    ran = _run_main(tmp_path, [command], ("vault.app", "vault.console", "jinja2", "rich"))
    assert ran == {"code": 2, "loaded": []}


def test_structlog_is_imported_without_rich_and_rich_stays_importable() -> None:
    probe = (
        "import json, sys, importlib;"
        "from vault.observability.structlog_first import import_structlog_without_rich;"
        "import_structlog_without_rich();"
        "import structlog.dev, structlog.tracebacks;"
        "hidden = structlog.dev.rich is None and structlog.tracebacks.rich is None;"
        "before = 'rich' in sys.modules;"
        "importlib.import_module('rich');"
        "print(json.dumps([hidden, before, 'rich' in sys.modules]))"
    )
    if importlib.util.find_spec("rich") is None:
        pytest.skip("rich is not installed: nothing to hide")
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == [True, False, True]


def test_a_worker_builds_its_application_without_the_api_handlers_and_the_console() -> None:
    # `datavault worker` serves OPS_ROUTES only: the JSON API's handlers, the console and
    # its templates are imported where the API is served (create_app with serve_api).
    probe = (
        "import json, sys, vault.server, vault.app;"
        "print(json.dumps([m for m in ('vault.api_routes', 'vault.console.routes', "
        "'vault.http.records', 'jinja2') if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == []
