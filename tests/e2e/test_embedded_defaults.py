"""A new user's first run: `datavault serve` with no configuration at all."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import outside_pytest_tmp, vault_process


def _clean_env() -> dict[str, str]:
    # No DATABASE_URL, no root-key setting: the embedded defaults.
    return {k: v for k, v in os.environ.items() if not k.startswith(("DATAVAULT_", "DATABASE_URL"))}


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vault", *args, "--data-dir", str(data_dir)],
        env=_clean_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


class Served:
    def __init__(
        self, process: subprocess.Popen[bytes], url: str, data_dir: Path, log: Path,
        startup: float,
    ) -> None:  # fmt: skip
        self.process, self.url, self.data_dir, self.log = process, url, data_dir, log
        self.startup = startup


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """One first run for the module's tests that read from it (a fresh embedded PostgreSQL
    is the slow part); the test that stops it comes last in this file. Outside pytest's
    temp tree, as `embedded_dir` (tests/conftest.py) says why."""
    with outside_pytest_tmp("datavault-test-first-run-") as folder:
        data_dir, log = folder / "data", folder / "serve.log"
        started = time.monotonic()
        with vault_process(["serve", "--data-dir", str(data_dir)], _clean_env(), log) as vault:
            yield Served(vault.process, vault.url, data_dir, log, time.monotonic() - started)


def test_first_start_creates_a_private_root_key_with_a_warning(served: Served) -> None:
    key_file = served.data_dir / "root.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    log = served.log.read_text()
    assert "ROOT KEY CREATED" in log
    assert f"datavault listening on {served.url}" in log
    assert "datavault tenant create" in log
    assert httpx.get(f"{served.url}/readyz").json()["checks"] == {
        "database": True,
        "blob_store": True,
    }
    print(f"fresh data dir to /healthz: {served.startup:.2f} s")


def _json_lines(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def test_request_log_line_carries_the_request_id_of_the_response(served: Served) -> None:
    # API.md: every response carries X-Request-Id (the client's own if sane, else a new
    # one); DESIGN.md: one JSON log line per request with that id, to match them up.
    minted = httpx.get(f"{served.url}/v1/api-keys")
    own = httpx.get(f"{served.url}/v1/api-keys", headers={"X-Request-Id": "e2e-trace-42"})
    assert (minted.status_code, own.status_code) == (401, 401)
    assert own.headers["X-Request-Id"] == "e2e-trace-42"
    requests = {
        str(line["request_id"]): line
        for line in _json_lines(served.log)
        if line.get("event") == "request"
    }
    for response in (minted, own):
        line = requests[response.headers["X-Request-Id"]]
        assert (line["route"], line["status"], line["level"]) == ("/v1/api-keys", 401, "info")


@pytest.mark.parametrize(("level", "requests_logged"), [("warning", False), ("info", True)])
def test_log_level_setting_decides_whether_requests_are_logged(
    embedded_dir: Path, level: str, requests_logged: bool
) -> None:
    log = embedded_dir / "serve.log"
    env = {**_clean_env(), "DATAVAULT_LOG_LEVEL": level}
    with vault_process(["serve", "--data-dir", str(embedded_dir / "data")], env, log) as vault:
        served = httpx.get(f"{vault.url}/v1/api-keys")
    assert served.status_code == 401
    lines = _json_lines(log)
    request_ids = [line["request_id"] for line in lines if line.get("event") == "request"]
    assert (served.headers["X-Request-Id"] in request_ids) is requests_logged
    if not requests_logged:
        assert request_ids == []
        assert {line["level"] for line in lines} <= {"warning", "error", "critical"}
    # Either way warnings are written: the first start's root-key warning is there.
    assert any(line["level"] == "warning" and "ROOT KEY CREATED" in str(line["event"])
               for line in lines)  # fmt: skip


def test_unknown_log_level_stops_serve_with_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vault", "serve", "--data-dir", str(tmp_path / "data")],
        env={**_clean_env(), "DATAVAULT_LOG_LEVEL": "loud"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "DATAVAULT_LOG_LEVEL" in result.stderr and "warning" in result.stderr
    assert "Traceback" not in result.stderr
    # Refused before anything started: no data directory, no embedded PostgreSQL.
    assert not (tmp_path / "data").exists()


def test_tenant_created_from_the_cli_is_served_and_no_secret_reaches_the_log(
    served: Served,
) -> None:
    """Last in the file: it stops the module's vault and checks what it left."""
    data_dir = served.data_dir
    created = _cli(data_dir, "tenant", "create", "acme", "--json")
    assert created.returncode == 0, created.stderr
    first = json.loads(created.stdout)
    assert set(first) == {"tenant_id", "slug", "api_key"}
    admin = {"Authorization": f"Bearer {first['api_key']}"}

    keys = httpx.post(
        f"{served.url}/v1/api-keys",
        headers=admin,
        json={"name": "recorder", "scopes": ["ingest", "read"]},
    )
    assert keys.status_code == 201
    issued = keys.json()["secret"]
    wrong = issued[:-4] + "AAAA"
    assert (
        httpx.get(
            f"{served.url}/v1/api-keys", headers={"Authorization": f"Bearer {wrong}"}
        ).status_code
        == 401
    )
    assert httpx.get(f"{served.url}/v1/api-keys", headers=admin).status_code == 200

    listed = _cli(data_dir, "tenant", "list", "--json")
    assert [t["slug"] for t in json.loads(listed.stdout)["tenants"]] == ["acme"]
    assert _cli(data_dir, "audit", "verify").returncode == 0

    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=60) == 0
    log = served.log.read_text() + created.stderr + listed.stderr
    assert "Application shutdown complete" in log
    # The embedded PostgreSQL stopped with the vault: nothing left running on its data dir.
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    for secret in (first["api_key"], issued, wrong):
        # dv_<prefix>_<secret>; the secret part itself may contain "_" (base64url).
        assert secret.split("_", 2)[2] not in log
    # The failed attempt is visible by its public prefix only.
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(line.get("status") == 401 for line in lines)
