"""Giving a tenant's subject keys new bytes under a new KEK version and rewrapping every
live data key under them (vault/services/key_rotation.py uses it for `keys rotate` and
root-key epochs).

Subjects are taken in batches in id order; each batch is one transaction that holds the
subjects' row locks, so no writer adds a data key under the old bytes meanwhile (the one
that read the subject key before is refused by the database: migration 0018). Two
batches are in flight at once and the cryptography runs in a worker thread, so the
database applies one batch while this process computes the next.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crypto.keywrap import rewrap_key, unwrap_key, wrap_key
from crypto.secrets import SecretBytes, generate_key
from vault.db.database import Database
from vault.db.sql import Queries
from vault.services.keyring import KeyRing, SubjectKeyRef, data_key_context, subject_key_context

Q = Queries("keys")

# Subjects per transaction: bounds how long their rows stay locked (their writers wait
# for one batch: tens of milliseconds) and how much a retry redoes.
REWRAP_BATCH = 1000
# Batches in flight: one in the database while the next is computed.
_IN_FLIGHT = 2


@dataclass
class RewrapCounts:
    subject_keys: int = 0
    data_keys: int = 0


async def rewrap_subjects(
    db: Database, keyring: KeyRing, tenant_id: uuid.UUID, new_version: int, batch: int,
    counts: RewrapCounts,
) -> None:  # fmt: skip
    """Every subject with a live subject key under a KEK version older than
    `new_version`: walked once in id order, then once more from the start for any a
    writer added under an old version meanwhile (normally none)."""
    for _ in range(2):
        after: uuid.UUID | None = None
        in_flight: set[asyncio.Task[None]] = set()
        while True:
            async with db.tenant_tx(tenant_id) as conn:
                rows = await conn.fetch(Q.due_subjects, tenant_id, new_version, after, batch)
            if not rows:
                break
            subjects = [row["subject_id"] for row in rows]
            after = subjects[-1]
            if len(in_flight) >= _IN_FLIGHT:
                done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # a failed batch stops the rotation (it is rerun)
            in_flight.add(
                asyncio.create_task(
                    _rewrap_batch(db, keyring, tenant_id, new_version, subjects, counts)
                )
            )
        await asyncio.gather(*in_flight)


async def _rewrap_batch(
    db: Database, keyring: KeyRing, tenant_id: uuid.UUID, new_version: int,
    subjects: list[uuid.UUID], counts: RewrapCounts,
) -> None:  # fmt: skip
    async with db.tenant_tx(tenant_id) as conn:
        await conn.execute(Q.lock_subjects, tenant_id, subjects)
        rows = await conn.fetch(Q.keys_to_rewrap, tenant_id, subjects, new_version)
        if not rows:
            return
        keks = {
            version: await keyring.kek(conn, tenant_id, version)
            for version in {new_version, *(row["kek_version"] for row in rows)}
        }
        subject_keys, data_keys = await asyncio.to_thread(
            _rewrapped, tenant_id, rows, keks, new_version
        )
        await conn.execute(
            Q.rewrap_data_keys, tenant_id, new_version, list(data_keys), list(data_keys.values())
        )
        await conn.execute(
            Q.rewrap_subject_keys, tenant_id, new_version, list(subject_keys),
            list(subject_keys.values()),
        )  # fmt: skip
    counts.subject_keys += len(subject_keys)
    counts.data_keys += len(data_keys)


def _rewrapped(
    tenant_id: uuid.UUID, rows: Sequence[Any], keks: Mapping[int, SecretBytes], new_version: int
) -> tuple[dict[uuid.UUID, bytes], dict[uuid.UUID, bytes]]:
    """New bytes for each subject key (wrapped under the new KEK) and each of its data
    keys rewrapped under them. `rows`: keys.sql `keys_to_rewrap`, one per data key, in
    subject-key order. The old and new subject-key bytes never leave this function."""
    subject_keys: dict[uuid.UUID, bytes] = {}
    data_keys: dict[uuid.UUID, bytes] = {}
    current: tuple[SubjectKeyRef, SecretBytes, SecretBytes] | None = None
    for row in rows:
        if current is None or current[0].id != row["id"]:
            ref = SubjectKeyRef(
                tenant_id, row["id"], row["subject_id"], row["category"], row["generation"]
            )
            old_bytes = unwrap_key(
                keks[row["kek_version"]], bytes(row["wrapped_key"]),
                subject_key_context(ref, row["kek_version"]),
            )  # fmt: skip
            new_bytes = generate_key()
            subject_keys[ref.id] = wrap_key(
                keks[new_version], new_bytes, subject_key_context(ref, new_version)
            )
            current = (ref, old_bytes, new_bytes)
        if row["data_key_id"] is not None:
            ref, old_bytes, new_bytes = current
            data_keys[row["data_key_id"]] = rewrap_key(
                old_bytes, new_bytes, bytes(row["data_wrapped"]),
                data_key_context(ref, row["data_key_id"]),
            )  # fmt: skip
    return subject_keys, data_keys
