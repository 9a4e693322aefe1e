"""An erasure request that PostgreSQL aborts as a deadlock's victim (the executor's batch
claims erasure rows, then subject rows; a request the other way round) or with a
serialization failure starts again inside the service: a bounded number of times, then
503 with Retry-After; never 500. The real race is staged in test_redteam3_races.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from tests.api.helpers import auth, create_key
from tests.support import ServerThread, Tenant, make_tenant, problem
from vault.services import erasures
from vault.services.erasures import ErasureService


@pytest.fixture
def tenant(quiet_vault: ServerThread) -> Tenant:
    return make_tenant(quiet_vault.settings, quiet_vault.database_url)


def _failing(
    monkeypatch: pytest.MonkeyPatch, failures: int, error: Callable[[], Exception]
) -> list[int]:
    """The first `failures` attempts of the request's transaction raise `error()`;
    returns the list that counts attempts."""
    real = ErasureService._request_once
    attempts: list[int] = []

    async def flaky(self: ErasureService, *args: Any, **kwargs: Any) -> Any:
        attempts.append(1)
        if len(attempts) <= failures:
            raise error()
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(ErasureService, "_request_once", flaky)
    return attempts


def _ask(quiet_vault: ServerThread, tenant: Tenant) -> Any:
    with quiet_vault.client() as http:
        privacy = create_key(http, tenant, ["erasure"])
        return http.post("/v1/subjects/someone/erasure", headers=auth(privacy))


@pytest.mark.parametrize(
    "error",
    [asyncpg.DeadlockDetectedError, asyncpg.SerializationError],
    ids=["deadlock", "serialization"],
)
def test_a_request_aborted_short_of_the_bound_starts_again_and_succeeds(
    quiet_vault: ServerThread, tenant: Tenant, monkeypatch: pytest.MonkeyPatch,
    error: Callable[[], Exception],
) -> None:  # fmt: skip
    attempts = _failing(monkeypatch, erasures._DEADLOCK_ATTEMPTS - 1, error)
    answer = _ask(quiet_vault, tenant)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "scheduled"
    assert len(attempts) == erasures._DEADLOCK_ATTEMPTS


def test_a_request_aborted_every_time_answers_503_with_retry_after(
    quiet_vault: ServerThread, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts = _failing(monkeypatch, 100, asyncpg.DeadlockDetectedError)
    answer = _ask(quiet_vault, tenant)
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "1"
    assert problem(answer)["status"] == 503
    assert "someone" not in answer.text  # no subject reference in the problem
    assert len(attempts) == erasures._DEADLOCK_ATTEMPTS  # the bound, exactly
