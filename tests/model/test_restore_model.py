"""The deletion model (tests/model/test_deletion_model.py) with backups and restores: every
rule of that machine, and two more. `take_backup` runs `pg_dump` of the vault's database
while it serves and keeps a copy of the reference model beside the dump;
`restore_backup(one of them)` stops the vault, restores the dump into its database and
starts it (start-up replays the shred ledger), and the reference model decides what must
hold then (tests/model/restore_reference.py, after docs/runbook.md "Restoring a backup"):
keys destroyed since stay destroyed, erasures, holds, releases, restrictions and the
retention policy stand as they are now, data written since is gone. The machine's checks
after every step then apply to the restored vault, and right after the restore
`datavault check deletion`'s scan (as of now) finds nothing for the tenant.

A machine of its own rather than two more rules in the deletion model's: each example
needs a vault and a database of its own (a restore rolls back the whole database, which
the deletion model shares among 50 examples' tenants), and a restore costs ~2 s where
that model's steps cost milliseconds, so its 20 examples of 25 steps stay as quick as
they were and this one runs few, short examples (restore_support.EXAMPLES/STEPS).

Left out: restoring a backup that an earlier restore abandoned (taken after the backup
that was restored, in the line of history the restore rolled back). The model names
items and keys by when they were made, which holds only along one line of history; such
a restore is noted and skipped.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
from hypothesis import HealthCheck, note, seed, settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.jobs import deletion_violations
from tests.model import restore_support as rsup
from tests.model import support as sup
from tests.model.reference import ReferenceModel
from tests.model.restore_reference import restore
from tests.model.test_deletion_model import REFS, DeletionMachine


@dataclass
class Backup:
    number: int
    dump: Path
    model: ReferenceModel  # a copy as of the dump
    abandoned: bool = False  # a restore rolled back the history it was taken in


def restorable(machine: RestoreMachine) -> bool:
    """A restore is left to do, and something changed since the newest backup (a restore
    of the present tests little)."""
    return (
        machine.restores < rsup.MAX_RESTORES
        and bool(machine.taken)
        and machine.model.seq > machine.taken[-1].model.seq
    )


class RestoreMachine(DeletionMachine):
    backups = Bundle("backups")

    def __init__(self, vault: rsup.RestorableVault) -> None:
        super().__init__(vault.current)
        self.deployment = vault
        self.taken: list[Backup] = []
        self.restores = 0

    def teardown(self) -> None:
        super().teardown()
        self.deployment.close()

    @initialize(target=backups)
    def first_backup(self) -> int:
        """Every example starts with a record of each subject and a backup of them, so
        that its restores have something to restore (hypothesis' first, simplest
        examples and its swarm testing, which switches rules off per example, would
        otherwise leave most examples without a backup). The records are not in the
        `records` bundle (an initialize step has one target); a later write of the same
        record is."""
        for ref, name in zip(REFS, ("profile", "invoice"), strict=True):
            self.write_record(ref, name)
        return self._backup()

    # A backup of a tenant with no data, or a restore with nothing changed since the
    # newest backup, tests little: the steps go to the others.
    @precondition(lambda self: len(self.taken) < rsup.MAX_BACKUPS and bool(self.model.subjects))
    @rule(target=backups)
    def take_backup(self) -> int:
        return self._backup()

    def _backup(self) -> int:
        self._begin(f"take_backup(#{len(self.taken) + 1})")
        dump = self.deployment.take_backup()
        self.taken.append(Backup(len(self.taken) + 1, dump, copy.deepcopy(self.model)))
        return len(self.taken) - 1

    @precondition(restorable)
    @rule(backup=backups)
    def restore_backup(self, backup: int) -> None:
        self._restore(self.taken[backup])

    # The same as restore_backup(the newest backup still in the line of history), as a
    # rule of its own: hypothesis' swarm testing switches whole rules off per example,
    # and among the deletion model's fourteen a single restore rule would seldom come up.
    @precondition(restorable)
    @rule()
    def restore_newest_backup(self) -> None:
        self._restore(next(b for b in reversed(self.taken) if not b.abandoned))

    def _restore(self, chosen: Backup) -> None:
        if chosen.abandoned:
            note(f"restore of backup #{chosen.number} left out: a restore abandoned it")
            return
        self._begin(f"restore_backup(#{chosen.number})")
        self.restores += 1
        self.http.close()
        self.vault = self.deployment.restore(chosen.dump)
        self.http = self.vault.server.client()
        restore(self.model, copy.deepcopy(chosen.model))
        for later in self.taken[chosen.number :]:
            later.abandoned = True
        self._scan_after_restore()

    def _scan_after_restore(self) -> None:
        """`datavault check deletion` on the restored vault, as of now (its default 15
        minutes' grace is for the jobs' intervals; here nothing is owed to a job yet:
        what start-up replays it has done before serving)."""
        found = [
            v
            for v in deletion_violations(self.vault.server)
            if v.tenant_id in (None, self.keys.tenant_id)
        ]
        sup.expect(
            not found, sup.DeletionInvariantViolated,
            f"{self._where()}: the deletion scan after the restore found "
            + "; ".join(f"{v.kind}: {v.detail}" for v in found),
        )  # fmt: skip


@pytest.fixture
def vaults(
    pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[], rsup.RestorableVault]:
    """Makes each example's vault (the machine drops its database at teardown)."""

    def make() -> rsup.RestorableVault:
        return rsup.RestorableVault(
            pg_admin_url, tmp_path_factory.mktemp("restore-model-vault"),
            tmp_path_factory.mktemp("restore-model-dumps"),
        )  # fmt: skip

    return make


@pytest.mark.slow
@pytest.mark.timeout(0 if rsup.HUNTING or sup.HUNTING else 900)
def test_a_restored_backup_follows_the_deletion_model(
    vaults: Callable[[], rsup.RestorableVault],
) -> None:
    def machine() -> RestoreMachine:
        return RestoreMachine(vaults())

    run_state_machine_as_test(
        cast(type[RuleBasedStateMachine], seed(sup.SEED)(machine)),
        settings=settings(
            max_examples=rsup.EXAMPLES,
            stateful_step_count=rsup.STEPS,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
