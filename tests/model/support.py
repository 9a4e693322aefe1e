"""Support for the model-based deletion test: switches, the vault it drives (one server
with its background jobs off), the per-example tenant and keys, the worker pass run by
hand with a moved clock, and the hook for the deletion-invariant scan.

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
- DATAVAULT_MODEL_SEED=N: another fixed seed for the examples (CI runs one fixed seed,
  so every run tests the same examples).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from hypothesis import note

from tests.api.helpers import create_key
from tests.support import ServerThread, Tenant, bearer, make_tenant, private_server
from vault.runtime import operator_context

LEGACY = os.environ.get("DATAVAULT_MODEL_LEGACY", "") == "1"
EXAMPLES = int(os.environ.get("DATAVAULT_MODEL_EXAMPLES", "30"))
STEPS = int(os.environ.get("DATAVAULT_MODEL_STEPS", "25"))
TOLERATED = frozenset(filter(None, os.environ.get("DATAVAULT_MODEL_TOLERATE", "").split(",")))
SKIPPED_RULES = frozenset(filter(None, os.environ.get("DATAVAULT_MODEL_SKIP", "").split(",")))
SHRINK_SECONDS = int(os.environ.get("DATAVAULT_MODEL_SHRINK_SECONDS", "0"))
SEED = int(os.environ.get("DATAVAULT_MODEL_SEED", "20260101"))
# pytest's 120 s default would cut a failing CI run short in hypothesis' shrinking (up to
# 300 s after the examples), and the shrunk steps are the report; a hunt has no limit.
HUNTING = any(
    os.environ.get(f"DATAVAULT_MODEL_{name}")
    for name in ("EXAMPLES", "STEPS", "SEED", "SHRINK_SECONDS", "TOLERATE", "SKIP")
)
TIMEOUT_SECONDS = 0 if HUNTING else 900

# Compliance keys: name -> owner (the person). Two keys of officer A, one of officer B;
# all three created by the tenant's first admin key, so none created another.
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
    """Authorization headers of one example's tenant, one per role."""

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
    """A fresh tenant (so examples never see each other) and its keys."""
    tenant: Tenant = make_tenant(vault.server.settings, vault.database_url)

    def key(scopes: list[str], **fields: Any) -> dict[str, str]:
        return bearer(create_key(http, tenant, scopes, **fields)["secret"])

    officers = {}
    for name, owner in OFFICERS.items():
        if LEGACY:
            if name in LEGACY_OFFICERS:
                officers[name] = key(["compliance"], name=name)
        else:
            officers[name] = key(["compliance"], name=name, owner=owner)
    return TenantKeys(
        admin=tenant.auth(),
        ingest=key(["ingest"]),
        read=key(["read"]),
        erasure=key(["erasure"]),
        officers=officers,
    )


def virtual_now(offset_days: int) -> datetime:
    return datetime.now(UTC) + timedelta(days=offset_days)


def run_worker_pass(vault: ModelVault, now: datetime) -> None:
    """One pass of the background jobs that delete, as the worker runs them, with the
    clock at `now`: the erasure executor, retention, then the shred-ledger publisher and
    erasure completion (so a due erasure goes scheduled -> completed or held in one pass).

    The one place that names the job functions: they are imported here, not at the top."""
    from vault.services.erasure_receipts import ReceiptIssuer
    from vault.services.ledger import publish_and_complete
    from workers.erasure import run_due_erasures
    from workers.retention import apply_retention

    async def run() -> None:
        async with operator_context(vault.server.settings, vault.database_url) as ctx:
            issuer = await ReceiptIssuer.for_deployment(ctx.db, ctx.root, ctx.settings)
            await run_due_erasures(ctx.db, ctx.keyring, now=now)
            await apply_retention(ctx.db, ctx.keyring, now=now)
            await publish_and_complete(ctx.db, ctx.blobs, issuer)

    asyncio.run(run())


def deletion_scan_available() -> bool:
    """Whether this checkout's workers package has the scan. (An editable install of
    another checkout can make the import machinery find that one's module instead.)"""
    import workers

    spec = importlib.util.find_spec("workers.deletion_check")
    if spec is None or spec.origin is None or workers.__file__ is None:
        return False
    return Path(spec.origin).parent == Path(workers.__file__).parent


def deletion_violations(database_url: str, grace: timedelta) -> list[Any]:
    """What `workers/deletion_check.py` finds wrong in the whole database (owner URL).

    The scan runs at the real now, not the virtual one: the database holds tenants of
    earlier examples whose last pass ran at another virtual time, and every tenant's
    state is that of a time at or after the real now, so the real now is the one time
    at which every tenant must pass. (What a pass shredded is never owed at an earlier
    time; what it kept at a later time is kept at an earlier one too.)"""
    scan = importlib.import_module("workers.deletion_check")
    found: list[Any] = asyncio.run(scan.find_deletion_violations(database_url, grace=grace))
    return found
