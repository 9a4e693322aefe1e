"""The reference model of the vault's deletion guarantees: pure Python, no HTTP, no
database. It says what each scope may read after any sequence of writes, deletes,
erasures, holds, retention changes, restrictions and worker passes (DESIGN.md, API.md).

Time: the vault's own clock is the real one and the test cannot move it, so every API
action (a write, a request, a settings change) happens on virtual day SERVER_DAY; only
the worker passes run at a later virtual day. Ages are counted in virtual days from
SERVER_DAY, and "written before a settings change" is the order of the actions (`seq`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

SERVER_DAY = 0
# DESIGN.md: shortening keep_at_least_days binds older data only after the closure delay.
CLOSURE_DELAY_DAYS = 60
IDENTITY = "identity"  # the subject's sealed reference, one key per generation
TWO_PERSON_REASONS = frozenset({"litigation", "law_enforcement"})
ONE_PERSON_REASONS = frozenset({"billing", "fraud_investigation", "regulatory"})
GONE = frozenset({404, 410})


@dataclass(frozen=True)
class Rule:
    delete_after_days: int | None
    keep_at_least_days: int | None


DEFAULT_RETENTION = {
    "recording": Rule(90, None),
    "support": Rule(1096, None),
    "account": Rule(None, None),
    "billing": Rule(2557, 2557),
}


@dataclass(frozen=True)
class PendingKeep:
    """A shortened or removed keep_at_least_days: data written before the change stays
    bound by the old value until the closure delay has passed."""

    old_keep: int
    changed_seq: int
    effective_day: int


@dataclass
class Item:
    """One data key: an artefact, or one version of a record."""

    label: str
    ref: str
    category: str
    generation: int
    created_day: int
    seq: int
    content: bytes
    live: bool = True


@dataclass
class Record:
    name: str
    category: str
    versions: dict[int, Item] = field(default_factory=dict)
    current: int | None = None  # the version GET answers with; None once retired

    def current_item(self) -> Item | None:
        return None if self.current is None else self.versions[self.current]


@dataclass
class Subject:
    ref: str
    generation: int = 1
    restricted: bool = False
    live_keys: set[tuple[int, str]] = field(default_factory=set)  # (generation, category)
    ref_copy_generation: int | None = None  # where the sealed reference lives, if live
    records: dict[str, Record] = field(default_factory=dict)
    artefacts: dict[str, Item] = field(default_factory=dict)
    # False for a subject first written after a backup that was restored since (and not
    # restricted since): the model keeps it (its forgotten items, its generations), the
    # vault does not know it until it is written again.
    known: bool = True

    def items(self) -> Iterator[Item]:
        yield from self.artefacts.values()
        for record in self.records.values():
            yield from record.versions.values()


@dataclass
class Erasure:
    id: str
    ref: str
    generations: tuple[int, ...]  # what it covers; () for a subject never written
    not_before_hours: int  # after SERVER_DAY
    status: str = "scheduled"
    # As of the last pass that handled it: categories kept, and why.
    kept_by_holds: dict[str, frozenset[str]] = field(default_factory=dict)
    kept_by_retention: set[str] = field(default_factory=set)

    def kept(self) -> set[str]:
        return set(self.kept_by_holds) | self.kept_by_retention


@dataclass
class Hold:
    id: str
    ref: str | None  # None: the whole tenant
    categories: frozenset[str] | None  # None: all, the identity too
    reason: str
    expires_after_far: int | None  # days after support.FAR_EXPIRY; None: no expiry
    released: bool = False
    release_requested_by: str | None = None  # officer key name
    release_requested_seq: int | None = None  # which request: a restore tells them apart

    def covers(self, ref: str, category: str) -> bool:
        return (
            not self.released
            and (self.ref is None or self.ref == ref)
            and (self.categories is None or category in self.categories)
        )


@dataclass(frozen=True)
class Expected:
    """What a request may answer: these statuses, and for a 200 exactly this body."""

    statuses: frozenset[int]
    content: bytes | None
    why: str


class ReferenceModel:
    def __init__(self, officers: dict[str, str]) -> None:
        self.officers = officers  # key name -> owner
        self.day = SERVER_DAY  # the virtual day of the last worker pass
        self.seq = 0
        self.grace_hours = 0
        self.rules: dict[str, Rule] = dict(DEFAULT_RETENTION)
        self.pending: dict[str, PendingKeep] = {}
        self.subjects: dict[str, Subject] = {}
        self.erasures: list[Erasure] = []
        self.holds: dict[str, Hold] = {}

    # --- queries ---------------------------------------------------------------------

    def covering_holds(self, ref: str, category: str) -> frozenset[str]:
        return frozenset(h.id for h in self.holds.values() if h.covers(ref, category))

    def covered_generations(self, ref: str) -> set[int]:
        """Generations under a non-cancelled erasure: only compliance reads what is left."""
        return {
            g for e in self.erasures if e.ref == ref and e.status != "cancelled"
            for g in e.generations
        }  # fmt: skip

    def latest_erasure(self, ref: str) -> Erasure | None:
        mine = [e for e in self.erasures if e.ref == ref]
        return mine[-1] if mine else None

    def erasure(self, erasure_id: str) -> Erasure:
        return next(e for e in self.erasures if e.id == erasure_id)

    def ref_copy_live(self, ref: str) -> bool:
        subject = self.subjects.get(ref)
        return subject is not None and subject.ref_copy_generation is not None

    def artefact(self, artefact_id: str) -> Item:
        return next(
            s.artefacts[artefact_id] for s in self.subjects.values() if artefact_id in s.artefacts
        )

    def read(self, ref: str, item: Item | None, compliance: bool) -> Expected:
        """What a read of `item` answers (None: a record with no current version)."""
        subject = self.subjects[ref]
        live = item is not None and item.live
        if compliance:
            if not live:
                return Expected(GONE, None, "destroyed")
            assert item is not None
            return Expected(frozenset({200}), item.content, "live: compliance reads it")
        if subject.restricted:
            if live:
                return Expected(frozenset({403}), None, "subject restricted")
            return Expected(GONE | {403}, None, "destroyed, subject restricted")
        if not live:
            return Expected(GONE, None, "destroyed")
        assert item is not None
        if item.generation in self.covered_generations(ref):
            return Expected(frozenset({403}), None, "kept after an erasure request")
        return Expected(frozenset({200}), item.content, "live")

    # --- writes and deletes -------------------------------------------------------------

    def _tick(self) -> int:
        self.seq += 1
        return self.seq

    def _subject_for_write(self, ref: str) -> Subject:
        subject = self.subjects.setdefault(ref, Subject(ref))
        subject.known = True
        if subject.ref_copy_generation is None:  # first write, or the copy was shredded
            subject.ref_copy_generation = subject.generation
            subject.live_keys.add((subject.generation, IDENTITY))
        return subject

    def may_write(self, ref: str) -> bool:
        subject = self.subjects.get(ref)
        return subject is None or not subject.restricted

    def put_record(self, ref: str, name: str, category: str, content: bytes) -> tuple[int, int]:
        """(status, version) of a PUT the model allows (may_write)."""
        subject = self._subject_for_write(ref)
        record = subject.records.setdefault(name, Record(name, category))
        version = max(record.versions, default=0) + 1
        old = record.current_item()
        if (
            old is not None and not self.covering_holds(ref, category)
            and old.generation not in self.covered_generations(ref)
        ):  # fmt: skip
            # Replacing shreds the old version unless a hold keeps it, or an erasure
            # covers it (then that erasure destroys it: dv_record_write).
            old.live = False
        status = 201 if old is None else 200
        subject.live_keys.add((subject.generation, category))
        record.versions[version] = Item(
            f"record {ref}/{name} v{version}", ref, category, subject.generation, SERVER_DAY,
            self._tick(), content,
        )  # fmt: skip
        record.current = version
        return status, version

    def add_artefact(self, artefact_id: str, ref: str, category: str, content: bytes) -> None:
        subject = self._subject_for_write(ref)
        subject.live_keys.add((subject.generation, category))
        subject.artefacts[artefact_id] = Item(
            f"artefact {ref}/{category}/{artefact_id[:8]}", ref, category, subject.generation,
            SERVER_DAY, self._tick(), content,
        )  # fmt: skip

    def delete(self, ref: str, item: Item | None) -> tuple[frozenset[int], frozenset[str]]:
        """DELETE of a record's current version or an artefact: (statuses, hold ids a 409
        names). Applies the 204."""
        subject = self.subjects[ref]
        self._tick()
        if item is None or not item.live:
            return (GONE | {409} if subject.restricted else GONE), frozenset()
        if subject.restricted or item.generation in self.covered_generations(ref):
            # Restriction freezes deletion; what an erasure covers (scheduled or kept by
            # it) only that erasure destroys (keyring.check_destroyable). No holds named.
            return frozenset({409}), frozenset()
        holds = self.covering_holds(ref, item.category)
        if holds:
            return frozenset({409}), holds
        item.live = False
        for record in subject.records.values():
            if record.current_item() is item:
                record.current = None
        return frozenset({204}), frozenset()

    # --- erasures ---------------------------------------------------------------------

    def repeat_erasure(self, ref: str) -> Erasure | None:
        """The erasure a repeated request answers with (200), if any: the subject's
        scheduled one, extended to data written since it was asked for (a live key in a
        later generation), after which later writes start the next generation."""
        latest = self.latest_erasure(ref)
        if latest is None or latest.status not in ("scheduled", "in_progress"):
            return None
        self._tick()
        subject = self.subjects.get(ref)
        covered = max(latest.generations, default=0)
        if subject is not None and any(g > covered for g, _ in subject.live_keys):
            first = latest.generations[0] if latest.generations else self._after_erased(ref) + 1
            latest.generations = tuple(range(first, subject.generation + 1))
            subject.generation += 1
        return latest

    def _after_erased(self, ref: str) -> int:
        """The last generation an erasure not cancelled covers (0: none)."""
        return max(
            (max(e.generations) for e in self.erasures
             if e.ref == ref and e.status != "cancelled" and e.generations),
            default=0,
        )  # fmt: skip

    def start_erasure(self, erasure_id: str, ref: str) -> None:
        """A 202: a new erasure, covering the generations since the last one not
        cancelled, and the subject's next generation starts."""
        self._tick()
        subject = self.subjects.get(ref)
        generations: tuple[int, ...] = ()
        if subject is not None:
            generations = tuple(range(self._after_erased(ref) + 1, subject.generation + 1))
            subject.generation += 1
        self.erasures.append(Erasure(erasure_id, ref, generations, self.grace_hours))

    def cancel(self, erasure_id: str) -> int:
        erasure = self.erasure(erasure_id)
        self._tick()
        if erasure.status == "scheduled" and erasure.not_before_hours > 0:
            erasure.status = "cancelled"
            return 200
        return 409

    # --- holds ------------------------------------------------------------------------

    def place_hold(self, hold: Hold) -> None:
        self._tick()
        self.holds[hold.id] = hold

    def amend_hold(self, hold_id: str, expires_after_far: int) -> int:
        """PATCH expires_at of an unreleased hold: only later, and never onto a hold that
        has no expiry."""
        hold = self.holds[hold_id]
        self._tick()
        if hold.expires_after_far is None or expires_after_far < hold.expires_after_far:
            return 422
        hold.expires_after_far = expires_after_far
        return 200

    def release(self, hold_id: str, officer: str) -> int:
        hold = self.holds[hold_id]
        self._tick()
        if hold.released:
            return 409
        if hold.reason in ONE_PERSON_REASONS:
            hold.released = True
            return 200
        asked = hold.release_requested_by
        if asked is None:
            hold.release_requested_by, hold.release_requested_seq = officer, self.seq
            return 202
        if officer == asked or self.officers[officer] == self.officers[asked]:
            return 409
        hold.released = True
        return 200

    def withdraw_release(self, hold_id: str) -> None:
        self._tick()
        self.holds[hold_id].release_requested_by = None
        self.holds[hold_id].release_requested_seq = None

    # --- settings and restriction -----------------------------------------------------

    def set_grace(self, hours: int) -> None:
        self.grace_hours = hours

    def change_retention(self, category: str, delete: int | None, keep: int | None) -> int:
        if delete is not None and keep is not None and delete < keep:
            return 422
        seq = self._tick()
        old = self.rules[category].keep_at_least_days
        pending = self.pending.get(category)
        if pending is not None and keep == pending.old_keep:
            del self.pending[category]  # setting the old value back cancels the change
        elif pending is None and old is not None and (keep is None or keep < old):
            self.pending[category] = PendingKeep(old, seq, SERVER_DAY + CLOSURE_DELAY_DAYS)
        self.rules[category] = Rule(delete, keep)
        return 200

    def restrict(self, ref: str) -> int:
        subject = self.subjects.get(ref)
        if subject is None:
            return 404
        subject.restricted = True
        return 200

    def lift_restriction(self, ref: str) -> None:
        self.subjects[ref].restricted = False

    # --- the worker pass --------------------------------------------------------------

    def keep_days(self, item: Item, day: int) -> int | None:
        """The keep_at_least_days that binds `item` on `day`."""
        pending = self.pending.get(item.category)
        if pending is not None and item.seq < pending.changed_seq and day < pending.effective_day:
            return pending.old_keep
        return self.rules[item.category].keep_at_least_days if item.category in self.rules else None

    def _statutory(self, item: Item, day: int) -> bool:
        keep = self.keep_days(item, day)
        return item.live and keep is not None and item.created_day + keep > day

    def worker_pass(self, days: int) -> None:
        """The executor (due erasures, then a new look at held ones), retention, and the
        ledger's completion, at the virtual day `days` after the last pass."""
        self.day += days
        self._tick()
        held = [e for e in self.erasures if e.status == "held"]
        for erasure in self.erasures:
            if erasure.status == "scheduled" and erasure.not_before_hours <= 24 * self.day:
                self._shred(erasure)
                erasure.status = "held" if erasure.kept() else "completed"
        for erasure in held:
            if self._shred(erasure):
                erasure.status = "held" if erasure.kept() else "completed"
        self._apply_retention()

    def _shred(self, erasure: Erasure) -> int:
        """Destroy every subject key the erasure covers that no hold or statutory retention
        keeps; note what is kept and why. Returns how many keys were destroyed."""
        subject = self.subjects.get(erasure.ref)
        erasure.kept_by_holds, erasure.kept_by_retention = {}, set()
        if subject is None or not erasure.generations:
            return 0
        destroyed = 0
        for generation, category in sorted(subject.live_keys):
            if generation not in erasure.generations:
                continue
            holds = self.covering_holds(subject.ref, category)
            retained = any(
                self._statutory(item, self.day) for item in subject.items()
                if item.generation == generation and item.category == category
            )  # fmt: skip
            if holds:
                erasure.kept_by_holds[category] = (
                    erasure.kept_by_holds.get(category, frozenset()) | holds
                )
            if retained:
                erasure.kept_by_retention.add(category)
            if holds or retained:
                continue
            destroyed += 1
            subject.live_keys.discard((generation, category))
            for item in subject.items():
                if item.generation == generation and item.category == category:
                    item.live = False
            for record in subject.records.values():
                current = record.current_item()
                if current is not None and not current.live:
                    record.current = None
            if category == IDENTITY and subject.ref_copy_generation == generation:
                subject.ref_copy_generation = None
        return destroyed

    def _apply_retention(self) -> None:
        """Expired current data, and replaced versions no hold keeps any more; neither
        while a hold covers it or its subject is restricted."""
        for subject in self.subjects.values():
            if subject.restricted:
                continue
            # What an erasure covers is that erasure's to destroy, not retention's.
            erased = self.covered_generations(subject.ref)
            current = [r.current_item() for r in subject.records.values()]
            for item in [*subject.artefacts.values(), *(i for i in current if i is not None)]:
                rule = self.rules.get(item.category)
                if (
                    item.live and item.generation not in erased
                    and rule is not None and rule.delete_after_days is not None
                    and item.created_day + rule.delete_after_days <= self.day
                    and not self.covering_holds(subject.ref, item.category)
                    and not self._statutory(item, self.day)
                ):  # fmt: skip
                    item.live = False
            for record in subject.records.values():
                for version, item in record.versions.items():
                    kept = self.covering_holds(subject.ref, item.category)
                    retired = version != record.current and item.live
                    if retired and not kept and item.generation not in erased:
                        item.live = False
                current_item = record.current_item()
                if current_item is not None and not current_item.live:
                    record.current = None
