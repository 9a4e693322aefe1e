"""Shred-ledger checkpoints: ledger objects folded into one signed statement.

Every destroyed key costs the ledger an entry of about 200 bytes, kept for as long as a
restored backup could need it (vault/domain/ledger_folding.py says when that ends).
Compaction (workers/ledger_compaction.py) then replaces a run of objects by a checkpoint,
`ledger-checkpoints/<last seq>.json`, which states:

- `after` and `through`: the ledger position the folded run continues from (the previous
  checkpoint's `through`, or seq 0 with 32 zero bytes) and its last object with that
  object's SHA-256, so the first object kept still links to a head the checkpoint vouches
  for, and a checkpoint is chained to the head it replaces;
- `object_hashes`: the SHA-256 of every folded object in order (base64url), so a receipt
  that names `ledger: {seq, head}` of a folded object still shows the ledger reached it;
- `previous_checkpoint`: the SHA-256 of the previous checkpoint's stored bytes: the
  checkpoints form a chain of their own, and one removed or put back shows;
- `entries` and `newest_destroyed_at`: how many destroyed keys it folds and when the
  last of them was destroyed, and `rule`: the fold rule's inputs (the oldest epoch not
  retired, the ledger head when it began, when the older ones were retired, the backup
  retention and KMS deletion window), which every reader checks the checkpoint against.

It is signed with the deployment's receipt key (its `type` keeps it from passing for a
receipt), so anyone holding the published key set (`/.well-known/jwks.json`) can check
it offline, and it is written under Object Lock where the bucket has it, like the entries.
Checkpoints are never deleted by the vault.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from vault.blobs.base import BlobNotFound, BlobStore
from vault.domain.ledger_folding import FoldBound
from vault.services.ledger_objects import GENESIS, LedgerError
from vault.services.receipt_verify import (
    ReceiptInvalid,
    load_receipt_json,
    verify_signed_statement,
)
from vault.services.receipts import ReceiptSigner, b64url, b64url_decode

CHECKPOINT_PREFIX = "ledger-checkpoints/"
CHECKPOINT_TYPE = "datavault.shred-ledger-checkpoint"
CHECKPOINT_VERSION = 1
_NAME = "checkpoint"  # the signed statement's field in the stored document
_DIGITS = 20
_HASH = 32
# At most this many objects fold into one checkpoint: verify, compaction and a receipt
# check read a checkpoint whole, and 100,000 object hashes are 4.3 MB of JSON.
MAX_OBJECTS_PER_CHECKPOINT = 100_000


def checkpoint_key(through_seq: int) -> str:
    return f"{CHECKPOINT_PREFIX}{through_seq:0{_DIGITS}d}.json"


def checkpoint_seq(key: str) -> int | None:
    """The last folded seq a checkpoint key names, or None for any other key."""
    stem = key.removeprefix(CHECKPOINT_PREFIX).removesuffix(".json")
    if len(stem) != _DIGITS or not stem.isdigit() or key != checkpoint_key(int(stem)):
        return None
    return int(stem)


@dataclass(frozen=True)
class Checkpoint:
    after_seq: int
    after_head: bytes
    through_seq: int
    through_head: bytes
    previous: bytes | None  # SHA-256 of the previous checkpoint's stored bytes
    object_hashes: bytes  # 32 bytes per folded object, after_seq + 1 .. through_seq
    entries: int
    newest_destroyed_at: datetime
    folded_at: datetime
    rule_epoch: int  # the oldest epoch not retired when it was written
    rule_ledger_seq_at_start: int
    key_id: str
    sha256: bytes  # of the stored bytes: what the next checkpoint links to

    def hash_at(self, seq: int) -> bytes | None:
        """The SHA-256 of folded object `seq`, None when this checkpoint does not fold it."""
        if not self.after_seq < seq <= self.through_seq:
            return None
        offset = (seq - self.after_seq - 1) * _HASH
        return self.object_hashes[offset : offset + _HASH]


@dataclass(frozen=True)
class FoldedRun:
    """Ledger objects to fold: their hashes in order and what their entries were."""

    after_seq: int
    after_head: bytes
    object_hashes: list[bytes]
    entries: int
    newest_destroyed_at: datetime

    @property
    def through_seq(self) -> int:
        return self.after_seq + len(self.object_hashes)


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _aware(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("a checkpoint's times carry their offset")
    return moment


def encode_checkpoint(
    run: FoldedRun,
    bound: FoldBound,
    previous: Checkpoint | None,
    signer: ReceiptSigner,
    issuer: str,
    folded_at: datetime,
) -> bytes:
    """The stored bytes of a checkpoint folding `run` (canonical JSON, signed)."""
    if not run.object_hashes or run.through_seq > bound.through_seq:
        raise ValueError("a checkpoint folds at least one object, and none past its rule")
    statement: dict[str, Any] = {
        "type": CHECKPOINT_TYPE,
        "v": CHECKPOINT_VERSION,
        "issuer": issuer,
        "after": {"seq": run.after_seq, "head": run.after_head.hex()},
        "through": {"seq": run.through_seq, "head": run.object_hashes[-1].hex()},
        "previous_checkpoint": previous.sha256.hex() if previous is not None else None,
        "object_hashes": b64url(b"".join(run.object_hashes)),
        "entries": run.entries,
        "newest_destroyed_at": _time(run.newest_destroyed_at),
        "folded_at": _time(folded_at),
        "rule": {
            "oldest_live_epoch": bound.epoch,
            "ledger_seq_at_epoch_start": bound.through_seq,
            "older_epochs_retired_by": _time(bound.older_retired_by),
            "backup_retention_days": bound.backup_retention_days,
            "kms_deletion_window_days": bound.kms_deletion_window_days,
        },
    }
    document = signer.sign_statement(_NAME, statement)
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def decode_checkpoint(data: bytes, jwks: Any, key: str) -> Checkpoint:
    """The checkpoint stored under `key`, checked: signed by a published receipt key, well
    formed, under its own name, and keeping to the fold rule it states. LedgerError
    otherwise (forged, changed or moved)."""
    where = checkpoint_seq(key)
    try:
        document = load_receipt_json(data)
        statement = verify_signed_statement(document, jwks, _NAME)
    except (ReceiptInvalid, ValueError) as exc:
        raise LedgerError(f"ledger checkpoint {where} does not verify (forged or changed)") from exc
    try:
        if statement["type"] != CHECKPOINT_TYPE or statement["v"] != CHECKPOINT_VERSION:
            raise ValueError("not a checkpoint")
        rule = statement["rule"]
        previous = statement["previous_checkpoint"]
        checkpoint = Checkpoint(
            after_seq=int(statement["after"]["seq"]),
            after_head=bytes.fromhex(statement["after"]["head"]),
            through_seq=int(statement["through"]["seq"]),
            through_head=bytes.fromhex(statement["through"]["head"]),
            previous=bytes.fromhex(previous) if previous is not None else None,
            object_hashes=b64url_decode(statement["object_hashes"]),
            entries=int(statement["entries"]),
            newest_destroyed_at=_aware(statement["newest_destroyed_at"]),
            folded_at=_aware(statement["folded_at"]),
            rule_epoch=int(rule["oldest_live_epoch"]),
            rule_ledger_seq_at_start=int(rule["ledger_seq_at_epoch_start"]),
            key_id=str(document["key_id"]),
            sha256=hashlib.sha256(data).digest(),
        )
        retention = timedelta(days=int(rule["backup_retention_days"]))
        window = timedelta(days=int(rule["kms_deletion_window_days"]))
        retired_by = _aware(rule["older_epochs_retired_by"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LedgerError(f"ledger checkpoint {where} is malformed") from exc
    folded = checkpoint.through_seq - checkpoint.after_seq
    if (
        where != checkpoint.through_seq
        or folded < 1
        or len(checkpoint.object_hashes) != folded * _HASH
        or checkpoint.hash_at(checkpoint.through_seq) != checkpoint.through_head
    ):
        raise LedgerError(f"ledger checkpoint {where} is malformed")
    # The rule it states, kept: nothing past the head when its oldest live epoch began,
    # nothing destroyed within the backup retention, older epochs retired (and past the
    # KMS window) before it was written.
    if (
        checkpoint.through_seq > checkpoint.rule_ledger_seq_at_start
        or checkpoint.newest_destroyed_at >= checkpoint.folded_at - retention
        or retired_by + window > checkpoint.folded_at
    ):
        raise LedgerError(f"ledger checkpoint {where} folds entries its own rule still keeps")
    return checkpoint


async def read_checkpoints(blobs: BlobStore, jwks: Any) -> list[Checkpoint]:
    """Every checkpoint, checked one by one and as a chain: the first continues from the
    ledger's start, each later one from where the one before ended, linked to its bytes."""
    checkpoints: list[Checkpoint] = []
    after_seq, after_head, previous = 0, GENESIS, None
    for key in await blobs.list_keys(CHECKPOINT_PREFIX):
        try:
            checkpoint = decode_checkpoint(await blobs.get(key), jwks, key)
        except BlobNotFound:
            raise LedgerError(f"ledger checkpoint {checkpoint_seq(key)} was removed") from None
        if (
            checkpoint.after_seq != after_seq
            or checkpoint.after_head != after_head
            or checkpoint.previous != previous
        ):
            raise LedgerError(
                f"ledger checkpoint {checkpoint.through_seq} does not continue from the one "
                "before (one was removed, changed or put back)"
            )
        checkpoints.append(checkpoint)
        after_seq, after_head = checkpoint.through_seq, checkpoint.through_head
        previous = checkpoint.sha256
    return checkpoints


async def newest_checkpoint_at_or_after(
    blobs: BlobStore, jwks_of: Callable[[], Awaitable[Any]], seq: int
) -> Checkpoint | None:
    """The newest checkpoint if it folds through `seq` or further (checked alone, not as
    a chain: start-up needs only to know whether its database is older than it), else
    None. `jwks_of`: an awaitable-returning callable for the key set, asked only then."""
    keys = [k for k in await blobs.list_keys(CHECKPOINT_PREFIX) if checkpoint_seq(k)]
    if not keys or (checkpoint_seq(keys[-1]) or 0) < seq:
        return None
    return decode_checkpoint(await blobs.get(keys[-1]), await jwks_of(), keys[-1])


@dataclass(frozen=True)
class Folded:
    """What the checkpoints say: through which seq the ledger is folded, the head there,
    and each folded object's hash."""

    checkpoints: list[Checkpoint]

    @property
    def through_seq(self) -> int:
        return self.checkpoints[-1].through_seq if self.checkpoints else 0

    @property
    def head(self) -> bytes:
        return self.checkpoints[-1].through_head if self.checkpoints else GENESIS

    @property
    def entries(self) -> int:
        return sum(c.entries for c in self.checkpoints)

    def hash_at(self, seq: int) -> bytes | None:
        for checkpoint in self.checkpoints:
            found = checkpoint.hash_at(seq)
            if found is not None:
                return found
        return None
