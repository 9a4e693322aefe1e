"""The walls of STYLE.md hold as lint rules (ruff's banned-api, TID251): domain/ imports no
web framework, database driver or storage SDK; services/ no starlette; only
crypto/_primitives.py imports cryptography.hazmat. Each wall is checked with a probe
module ruff lints as if it sat in that folder (nothing is written into the tree), beside
a folder where the same import is allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).parent / "ruff"


def _banned(path: str, source: str) -> list[str]:
    """The TID251 findings ruff reports for `source` placed at `path` in the tree."""
    checked = subprocess.run(
        [str(RUFF), "check", "--select", "TID251", "--output-format", "concise",
         "--stdin-filename", path, "-"],
        input=source, capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert checked.returncode in (0, 1), checked.stderr
    return [line for line in checked.stdout.splitlines() if "TID251" in line]


@pytest.mark.parametrize(
    "module",
    ["starlette.requests", "uvicorn", "asyncpg", "boto3", "botocore.exceptions",
     "vault.http.problems", "vault.db.database", "vault.services.keyring"],
)  # fmt: skip
def test_domain_imports_no_framework_driver_sdk_or_outer_layer(module: str) -> None:
    assert _banned("vault/domain/probe.py", f"import {module}\n")
    assert _banned("vault/domain/probe.py", f"from {module} import anything\n")
    # The same import is allowed where it belongs (the HTTP layer, a store, a service).
    assert _banned("vault/http/probe.py", f"import {module}\n") == []


@pytest.mark.parametrize("module", ["starlette.responses", "uvicorn", "vault.http.problems"])
def test_services_import_no_http(module: str) -> None:
    assert _banned("vault/services/probe.py", f"from {module} import anything\n")
    assert _banned("vault/console/probe.py", f"from {module} import anything\n") == []


def test_services_may_use_the_database() -> None:
    assert _banned("vault/services/probe.py", "import asyncpg\nimport vault.db.database\n") == []


@pytest.mark.parametrize(
    "path",
    ["crypto/stream.py", "crypto/providers/probe.py", "vault/domain/probe.py",
     "vault/services/probe.py", "vault/http/probe.py", "workers/probe.py"],
)  # fmt: skip
def test_only_the_primitives_module_imports_hazmat(path: str) -> None:
    hazmat = "from cryptography.hazmat.primitives.ciphers.aead import AESGCM\n"
    assert _banned(path, hazmat)
    assert _banned("crypto/_primitives.py", hazmat) == []
    # The safe parts of cryptography are not behind the wall.
    assert _banned(path, "from cryptography.exceptions import InvalidTag\n") == []


def test_the_tree_keeps_its_walls() -> None:
    checked = subprocess.run(
        [str(RUFF), "check", "--select", "TID251", "vault", "crypto", "workers"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout
