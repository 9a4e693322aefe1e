"""What the reference model (tests/model/reference.py) expects after a backup is restored:
the backup's data, minus every key destroyed since; the controls as they stand now. The
rules are docs/runbook.md "Restoring a backup" (a restore never loosens a control) and
docs/deletion-guarantee.md, as the vault's start-up replays the shred ledger:

- data written after the backup is gone (the backup lacks it): records and artefacts first
  written since read 404, versions written since are forgotten, a record's current
  version is the backup's;
- every key destroyed since stays destroyed (its reads stay 404/410), so an item is live
  only if it is live in the backup and still live now;
- erasures, holds, restrictions and the retention policy (with pending shortenings) stand
  as they are now: requested, placed, released, lifted or changed since comes back;
- a pending two-person release request survives only if it is in the backup and is the
  one the hold's newest ledger record shows (one withdrawn since, or asked again since,
  is dropped; one made since is never restored);
- the erasure grace period is a plain setting, not a control: the backup's value;
- subject generations stay where they are now: an erasure asked for since still starts
  the next generation, so data written after the restore is not under it.

The backup must be an ancestor of the model's present (taken in the current line of
history): the machine does not restore a backup a restore has abandoned (see
tests/model/test_restore_model.py), so items and keys are the same objects by `seq`.
"""

from __future__ import annotations

from tests.model.reference import IDENTITY, Item, Record, ReferenceModel, Subject


def restore(now: ReferenceModel, backup: ReferenceModel) -> None:
    """Change `now` into what must hold after `backup` (a copy of the model taken with the
    dump) is restored and the vault has started."""
    for ref, subject in now.subjects.items():
        _restore_subject(subject, backup.subjects.get(ref))
    for hold_id, hold in now.holds.items():
        then = backup.holds.get(hold_id)
        asked_then = then.release_requested_seq if then is not None else None
        if asked_then is None or asked_then != hold.release_requested_seq:
            hold.release_requested_by, hold.release_requested_seq = None, None
    now.grace_hours = backup.grace_hours


def _forget(item: Item) -> None:
    item.live = False


def _restore_subject(now: Subject, then: Subject | None) -> None:
    if then is None:
        # First written since: the backup has no row of it. One restricted since comes
        # back empty and restricted (runbook); any other is unknown until written again.
        for record in now.records.values():
            record.versions, record.current = {}, None
        for item in now.artefacts.values():
            _forget(item)
        now.live_keys, now.ref_copy_generation = set(), None
        now.known = now.restricted
        return
    for name, record in now.records.items():
        _restore_record(record, then.records.get(name))
    for artefact_id, item in now.artefacts.items():
        if artefact_id not in then.artefacts:
            _forget(item)  # uploaded since: a stub the bundle still names, read as 404
    now.live_keys &= then.live_keys
    copy = then.ref_copy_generation
    now.ref_copy_generation = copy if (copy, IDENTITY) in now.live_keys else None
    now.known = then.known or now.restricted


def _restore_record(record: Record, then: Record | None) -> None:
    """The backup's versions, each as live as it is now (destroyed since: stays so)."""
    kept = then.versions if then is not None else {}
    record.versions = {v: item for v, item in record.versions.items() if v in kept}
    current = then.current if then is not None else None
    # A current version destroyed since leaves the record without one, as a shred does
    # (the next write creates it again: 201).
    alive = current is not None and record.versions[current].live
    record.current = current if alive else None
