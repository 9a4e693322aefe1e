"""Red team 20: what reaches the vault's log, its metrics, its problem+json answers and
PostgreSQL's own server log when requests fail.

Every value a tenant or a person chose is planted as a unique canary (a subject
reference, a filename, a record value, an API key secret, a hold's case reference and
note, a disclosure description) and then the requests fail every way the API lets them:
unknown routes and methods under a subject path, a slash redirect, a wrong secret,
over-long and malformed bodies and headers, concurrent instructions that collide on the
database's unique indexes (the erasure `erasures_one_scheduled` race, the first write of
a record). Nothing the vault or its database wrote may carry a canary, and the database's
log must not carry a constraint violation's row values (`Key (…)=(…)`, `Failing row
contains`): row-level security keeps PostgreSQL from printing them (held; the tests stay
as regression tests).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.api.helpers import auth, create_key, data_keys, put_record, subject_url, upload
from tests.support import ServerThread, Tenant

# PostgreSQL prints these before a row's values when it is allowed to (no RLS).
_ROW_VALUE_MARKERS = ("Key (", "Failing row contains")


def _server_log(admin_url: str) -> Path | None:
    """The embedded PostgreSQL's log file (the wheel starts it with `pg_ctl -l
    <data directory>/log`); None for a server the tests did not start."""
    if os.environ.get("DATABASE_URL"):
        return None

    async def data_directory() -> str:
        conn = await asyncpg.connect(admin_url)
        try:
            return str(await conn.fetchval("SELECT current_setting('data_directory')"))
        finally:
            await conn.close()

    path = Path(asyncio.run(data_directory())) / "log"
    return path if path.exists() else None


def _tail(path: Path | None, start: int) -> str:
    if path is None:
        return ""
    with path.open("rb") as log:
        log.seek(start)
        return log.read().decode("utf-8", errors="replace")


def test_failed_requests_leave_no_canary_in_logs_metrics_answers_or_the_database_log(
    server: ServerThread,
    tenant: Tenant,
    pg_admin_url: str,
    vault_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tag = uuid.uuid4().hex[:10]
    canary = {
        "ref": f"rt20ref{tag}",
        "filename": f"rt20file{tag}.mp4",
        "value": f"rt20value{tag}",
        "secret": f"rt20secret{tag}" * 3,
        "case": f"rt20case{tag}",
        "note": f"rt20note{tag}",
        "description": f"rt20desc{tag}",
        "record": f"rt20rec{tag}",
    }
    pg_log = _server_log(pg_admin_url)
    pg_start = pg_log.stat().st_size if pg_log else 0
    answers: list[str] = []
    ref = canary["ref"]
    with server.client() as http:
        keys = data_keys(http, tenant)
        eraser = create_key(http, tenant, ["erasure"])
        value = json.dumps({"v": canary["value"]}).encode()
        assert put_record(http, keys.ingest, ref, canary["record"], value).status_code == 201
        created = upload(http, keys.ingest, ref, b"rt20", filename=canary["filename"])
        assert created.status_code == 201, created.text
        hold = {"subject_ref": ref, "reason": "billing", "reference": canary["case"],
                "note": canary["note"]}  # fmt: skip
        assert http.post("/v1/holds", json=hold, headers=auth(keys.compliance)).status_code == 201
        failing = [
            http.get(subject_url(ref, "nothing-here"), headers=auth(keys.read)),
            http.post(subject_url(ref, "records"), headers=auth(keys.read)),
            http.patch(subject_url(ref), headers=auth(keys.read)),
            http.get(subject_url(ref, "records") + "/", headers=auth(keys.read)),
            http.get(f"/v1/{ref}/{canary['filename']}", headers=auth(keys.read)),
            http.get(subject_url(ref), headers={"Authorization": f"Bearer {canary['secret']}"}),
            http.get(subject_url(ref), headers={"Authorization": f"Basic {canary['secret']}"}),
            http.get(subject_url(ref, "artefacts", canary["filename"]), headers=auth(keys.read)),
            put_record(http, keys.ingest, ref, canary["record"], b'{"v": "' + value + b"'"),
            put_record(http, keys.ingest, ref, canary["record"] + "/x", value),
            put_record(http, keys.ingest, ref, canary["record"] + "\u00e9", value),
            upload(http, keys.ingest, ref, b"x", filename=canary["filename"] + "\x01"),
            upload(http, keys.ingest, ref, b"x", category=canary["record"]),
            http.post("/v1/holds", json={**hold, "reason": canary["case"]},
                      headers=auth(keys.compliance)),
            http.post("/v1/holds", json={**hold, "note": canary["note"] + "\x00"},
                      headers=auth(keys.compliance)),
            http.post("/v1/holds", json={**hold, "subject_ref": ref * 200},
                      headers=auth(keys.compliance)),
            http.post("/v1/holds", json={**hold, "note": canary["note"] * 10_000},
                      headers=auth(keys.compliance)),
            http.post(
                "/v1/disclosures",
                json={"subject_ref": ref + "-unknown", "recipient": "a court",
                      "legal_basis": "art6-1-c", "reference": canary["case"],
                      "categories": ["account"], "description": canary["description"],
                      "disclosed_at": "2026-12-01T00:00:00Z"},
                headers=auth(keys.compliance),
            ),
            http.get("/v1/access-log", params={"subject_ref": ref, "ip": canary["value"]},
                     headers=auth(keys.compliance)),
        ]  # fmt: skip
        for response in failing:
            assert response.status_code < 500, response.text
            answers.append(f"{response.headers}\n{response.text}")

        def erase(_: int) -> int:
            with server.client() as own:
                fresh = subject_url(canary["ref"] + "-new", "erasure")
                return own.post(
                    fresh, json={"reference": canary["case"]}, headers=auth(eraser)
                ).status_code

        def first_write(_: int) -> int:
            with server.client() as own:
                fresh = canary["ref"] + "-rec"
                return put_record(own, keys.ingest, fresh, canary["record"], value).status_code

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            assert set(pool.map(erase, range(6))) <= {200, 202}
            assert set(pool.map(first_write, range(6))) <= {200, 201}
        metrics = http.get("/metrics").text
    captured = capsys.readouterr()
    written = {
        "the vault's log": captured.out + captured.err,
        "/metrics": metrics,
        "problem+json answers": "\n".join(answers),
        "PostgreSQL's log": _tail(pg_log, pg_start),
    }
    for where, text in written.items():
        for name, planted in canary.items():
            assert planted not in text, f"{name} reached {where}"
    for marker in _ROW_VALUE_MARKERS:
        assert marker not in written["PostgreSQL's log"]
    # Failed statements are logged by PostgreSQL (log_min_error_statement = ERROR) with
    # their text only: `$n` placeholders, never the parameters (the erasure race, when it
    # happens, shows as `duplicate key value violates unique constraint
    # "erasures_one_scheduled"` with no DETAIL line, as the table has RLS).


def test_the_embedded_postgresql_keeps_statement_parameters_out_of_its_log(
    pg_admin_url: str,
) -> None:
    """Held: the embedded server (the default without DATABASE_URL) logs no statement
    unless it fails, and a failed one without its parameters; the vault sets nothing
    itself, PostgreSQL's defaults give this (deploy/README.md asks the same of a server
    the operator runs)."""
    if os.environ.get("DATABASE_URL"):
        pytest.skip("a server the tests did not start")

    async def settings() -> dict[str, str]:
        conn = await asyncpg.connect(pg_admin_url)
        try:
            names = ("log_parameter_max_length_on_error", "log_statement",
                     "log_min_duration_statement", "log_min_duration_sample",
                     "log_error_verbosity")  # fmt: skip
            return {name: str(await conn.fetchval(f"SHOW {name}")) for name in names}
        finally:
            await conn.close()

    assert asyncio.run(settings()) == {
        "log_parameter_max_length_on_error": "0",
        "log_statement": "none",
        "log_min_duration_statement": "-1",
        "log_min_duration_sample": "-1",
        "log_error_verbosity": "default",
    }


def test_an_internal_error_quoting_row_values_is_logged_by_type_and_place_only(
    server: ServerThread,
    tenant: Tenant,
    vault_logging: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Held: an unexpected database error whose text quotes row values (a DETAIL as
    PostgreSQL writes it for a table without RLS) answers a plain 500 and is logged by
    its type and code locations, never its message, the request's headers or its path."""
    tag = uuid.uuid4().hex[:10]
    ref, value = f"rt20boomref{tag}", f"rt20boomvalue{tag}"
    with server.client() as http:
        keys = data_keys(http, tenant)
        assert put_record(http, keys.ingest, ref, "email", b'{"v": 1}').status_code == 201
        error = asyncpg.UniqueViolationError(f"duplicate key value: {value} for {ref}")
        error.detail = f"Key (tenant_id, name)=(x, {value})"

        async def failing(*_args: object, **_kwargs: object) -> None:
            raise error

        monkeypatch.setattr(server.state.records, "get", failing)
        answer = http.get(subject_url(ref, "records", "email"), headers=auth(keys.read))
    captured = capsys.readouterr().out
    assert answer.status_code == 500
    assert "unhandled_error" in captured
    for planted in (ref, value, keys.read["secret"]):
        assert planted not in captured
        assert planted not in answer.text
