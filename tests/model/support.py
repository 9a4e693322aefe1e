"""Support for the model-based deletion test: switches, the vault it drives (one server
with its background jobs off) and the per-example tenant and keys. The worker pass with
a moved clock and the deletion scan are tests/jobs.py's, as every other test runs them.

Switches (environment):
- DATAVAULT_MODEL_LEGACY=1: run against a vault without key `owner`s, record versions
  and release withdrawal (main before those changes): keys are created without `owner`,
  the second key of officer A and the rules and checks for those routes are left out.
- DATAVAULT_MODEL_EXAMPLES, DATAVAULT_MODEL_STEPS: more examples or steps for a hunt.
- DATAVAULT_MODEL_SHRINK_SECONDS=N: shrink for up to N s rather than hypothesis' 300 (a
  hunt on a vault with several defects shares those 300 s among all of them).
- DATAVAULT_MODEL_TOLERATE=Kind,Kind: mismatch kinds (class names below) noted rather
  than failed, to hunt past a known defect that would stop every example first. Only
  for kinds that leave the model's state right (a wrong field, not a wrong deletion).
- DATAVAULT_MODEL_SKIP=rule,rule: rules left out, to hunt past known defects that
  would end the search first (hypothesis stops looking 10 s after its first failure).
- DATAVAULT_MODEL_NO_REPEATS=1: no erasure request for a subject whose latest erasure is
  still scheduled or in progress, to hunt past a defect in repeated requests (on 2371e0c
  every path to a held erasure's defects first met that one).
- DATAVAULT_MODEL_SEED=N: another fixed seed for the examples (CI runs one fixed seed,
  so every run tests the same examples).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from hypothesis import note

from tests.api.helpers import create_key, operator_key_in
from tests.support import ServerThread, Tenant, bearer, new_tenant_in, private_server
from vault.runtime import operator_context

LEGACY = os.environ.get("DATAVAULT_MODEL_LEGACY", "") == "1"
EXAMPLES = int(os.environ.get("DATAVAULT_MODEL_EXAMPLES", "20"))
STEPS = int(os.environ.get("DATAVAULT_MODEL_STEPS", "25"))
TOLERATED = frozenset(filter(None, os.environ.get("DATAVAULT_MODEL_TOLERATE", "").split(",")))
SKIPPED_RULES = frozenset(filter(None, os.environ.get("DATAVAULT_MODEL_SKIP", "").split(",")))
SHRINK_SECONDS = int(os.environ.get("DATAVAULT_MODEL_SHRINK_SECONDS", "0"))
NO_REPEATS = os.environ.get("DATAVAULT_MODEL_NO_REPEATS", "") == "1"
SEED = int(os.environ.get("DATAVAULT_MODEL_SEED", "20260101"))
# pytest's 120 s default would cut a failing CI run short in hypothesis' shrinking (up to
# 300 s after the examples), and the shrunk steps are the report; a hunt has no limit.
HUNTING = any(
    os.environ.get(f"DATAVAULT_MODEL_{name}")
    for name in ("EXAMPLES", "STEPS", "SEED", "SHRINK_SECONDS", "TOLERATE", "SKIP", "NO_REPEATS")
)
TIMEOUT_SECONDS = 0 if HUNTING else 900

# Compliance keys: name -> owner (the person). Two keys of officer A, one of officer B;
# all three issued by the operator (`datavault api-key create`), so their lineages are
# their own and only the owners tell whether two of them are two people. (Keys one admin
# minted are one person's keys, whatever owners they name: a two-person release with two
# of them is refused, tests/api/test_hold_release_rules.py.)
OFFICERS: dict[str, str] = {
    "officer-a1": "officer-a",
    "officer-a2": "officer-a",
    "officer-b": "officer-b",
}
# Without `owner` on keys only one key per officer can be told apart from the others.
LEGACY_OFFICERS = ("officer-a1", "officer-b")

# Hold expiries are compared with the database's real now(), not the virtual clock: they
# lie beyond anything the test's virtual clock reaches, so no hold ever expires in it.
FAR_EXPIRY = datetime.now(UTC).replace(microsecond=0) + timedelta(days=6 * 365)


class ModelMismatch(AssertionError):
    """The vault answered otherwise than the reference model. One subclass per kind of
    answer, so that hypothesis reports (and shrinks) each kind as a bug of its own."""


# Reads. What a wrong answer means decides its kind: a leak (200 where the model reads
# nothing), data lost early (gone where the model still has it), data not shredded
# (compliance reads what the model destroyed), and anything else.
class ReadScopeLeak(ModelMismatch):
    pass


class DataLostEarly(ModelMismatch):
    pass


class NotShredded(ModelMismatch):
    pass


class ReadScopeMismatch(ModelMismatch):
    pass


class ComplianceReadMismatch(ModelMismatch):
    pass


class KeptVersionsMismatch(ModelMismatch):
    pass


# A listing of a subject's artefacts (metadata decrypted with each artefact's key): the
# artefacts it names for a scope are exactly those that scope may read.
class ListingMismatch(ModelMismatch):
    pass


# Erasures: the status, completed_at beside it, and what a held erasure says it keeps.
class ErasureStatusMismatch(ModelMismatch):
    pass


class ErasureCompletedAtMismatch(ModelMismatch):
    pass


class ErasureKeptMismatch(ModelMismatch):
    pass


class ErasureRequestMismatch(ModelMismatch):
    pass


class ErasureCancelMismatch(ModelMismatch):
    pass


class WriteMismatch(ModelMismatch):
    pass


class DeleteMismatch(ModelMismatch):
    pass


class HoldPlaceMismatch(ModelMismatch):
    pass


class HoldAmendMismatch(ModelMismatch):
    pass


class HoldReleaseMismatch(ModelMismatch):
    pass


class SettingsMismatch(ModelMismatch):
    pass


class RestrictionMismatch(ModelMismatch):
    pass


class DeletionInvariantViolated(ModelMismatch):
    pass


def read_mismatch(compliance: bool, expected: frozenset[int], got: int) -> type[ModelMismatch]:
    """The kind of a read that answered `got` where the model allows `expected`."""
    if got == 200:
        return NotShredded if compliance and expected <= {404, 410} else ReadScopeLeak
    if got in (404, 410) and expected & {200, 403}:
        return DataLostEarly
    return ComplianceReadMismatch if compliance else ReadScopeMismatch


def expect(condition: bool, kind: type[ModelMismatch], message: str) -> None:
    if condition:
        return
    if kind.__name__ in TOLERATED:
        note(f"tolerated {kind.__name__}: {message}")
        return
    raise kind(message)


def show(response: httpx.Response) -> str:
    """A response for a failure message: status and the start of the body."""
    return f"{response.status_code} {response.text[:300]!r}"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def expiry_at(days_after_far: int) -> str:
    return rfc3339(FAR_EXPIRY + timedelta(days=days_after_far))


@dataclass(frozen=True)
class ModelVault:
    """The vault server an example runs against (background jobs off) and its database."""

    server: ServerThread

    @property
    def database_url(self) -> str:
        return self.server.database_url


# Every worker pass walks every tenant of its database, and every example (shrinking
# runs thousands) makes a tenant: a fresh database now and then keeps passes quick.
TENANTS_PER_DATABASE = 50


class VaultServers:
    """Hands each example the vault to use: one server at a time, replaced by one on a
    fresh database after TENANTS_PER_DATABASE examples (never within CI's run)."""

    def __init__(self, pg_admin_url: str, data_dirs: Callable[[], Path]) -> None:
        self._pg_admin_url = pg_admin_url
        self._data_dirs = data_dirs
        self._running = ExitStack()
        self._current: ModelVault | None = None
        self._tenants = 0

    def for_next_example(self) -> ModelVault:
        if self._current is None or self._tenants >= TENANTS_PER_DATABASE:
            self.close()
            server = self._running.enter_context(
                private_server(self._pg_admin_url, self._data_dirs())
            )
            self._current, self._tenants = ModelVault(server), 0
        self._tenants += 1
        return self._current

    def close(self) -> None:
        self._running.close()
        self._current = None


@dataclass(frozen=True)
class TenantKeys:
    """One example's tenant and the authorization headers of its keys, one per role."""

    tenant_id: uuid.UUID
    admin: dict[str, str]
    ingest: dict[str, str]
    read: dict[str, str]
    erasure: dict[str, str]
    officers: dict[str, dict[str, str]]

    @property
    def compliance(self) -> dict[str, str]:
        """The compliance key the reads are checked with."""
        return self.officers["officer-a1"]


def new_tenant(vault: ModelVault, http: httpx.Client) -> TenantKeys:
    """A fresh tenant (so examples never see each other) and its keys. The tenant and the
    officers' operator-issued keys share one operator context: one context per key was
    four pools, four root-epoch syncs and four secret loads per example."""

    async def tenant_and_officers() -> tuple[Tenant, dict[str, dict[str, str]]]:
        async with operator_context(vault.server.settings, vault.database_url) as ctx:
            tenant = await new_tenant_in(ctx)
            if LEGACY:  # no owner on keys there: the officers' keys are the admin's (below)
                return tenant, {}
            return tenant, {
                name: bearer((await operator_key_in(ctx, tenant, ["compliance"], owner))["secret"])
                for name, owner in OFFICERS.items()
            }

    tenant, officers = asyncio.run(tenant_and_officers())

    def key(scopes: list[str], **fields: Any) -> dict[str, str]:
        return bearer(create_key(http, tenant, scopes, **fields)["secret"])

    if LEGACY:  # no lineage rule there: the admin's keys will do
        officers = {
            name: key(["compliance"], name=name) for name in OFFICERS if name in LEGACY_OFFICERS
        }
    return TenantKeys(
        tenant_id=tenant.id,
        admin=tenant.auth(),
        ingest=key(["ingest"]),
        read=key(["read"]),
        erasure=key(["erasure"]),
        officers=officers,
    )
