"""The key hierarchy below the root key, over PostgreSQL.

    tenant KEK (versioned, root-wrapped) → subject key (tenant, subject, category,
    generation) → data key (one per artefact or record version) → ciphertext

Every wrap binds its full context (crypto.context.KeyContext), so a wrapped key copied to
another row, tenant, subject, category, generation or KEK version fails to open; content
also binds the object it belongs to (`DataKey.content_context`), so a value moved with
its data key to another record, record version or artefact fails to open too.
All methods take the caller's tenant transaction: creating or destroying a key commits
together with the state change that needed it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from crypto.context import (
    OBJECT_ARTEFACT,
    OBJECT_RECORD,
    OBJECT_SUBJECT,
    PURPOSE_DATA_KEY,
    PURPOSE_SUBJECT_KEY,
    KeyContext,
    ObjectIdentity,
)
from crypto.keywrap import unwrap_key, wrap_key
from crypto.providers.base import RootKeyProvider
from crypto.secrets import SecretBytes, generate_key
from vault.db.database import Connection
from vault.db.sql import Queries
from vault.errors import Conflict, KeyDestroyed, NotFound, RestrictedDeletion
from vault.services.holds_seam import HoldCheck
from vault.services.kek_cache import KekCache
from vault.services.tenants import kek_context

Q = Queries("keys")

DataKeyPurpose = Literal["artefact", "record"]


@dataclass(frozen=True)
class SubjectKeyRef:
    tenant_id: uuid.UUID
    id: uuid.UUID
    subject_id: uuid.UUID
    category: str
    generation: int


@dataclass(frozen=True)
class DataKey:
    """An unwrapped data key and where it sits; `content_context` is what its ciphertext
    is bound to."""

    id: uuid.UUID
    purpose: DataKeyPurpose
    subject_key: SubjectKeyRef
    key: SecretBytes

    def content_context(self, obj: ObjectIdentity, part: str = "") -> KeyContext:
        """`obj`: the object the content belongs to, from the row that names it (never
        from the key); `record_object`, `artefact_object` or `subject_object`. `part`
        separates several messages under one data key (an artefact's stream and its
        sealed metadata), so one can never be passed off as the other."""
        ref = self.subject_key
        return KeyContext(
            purpose=self.purpose,
            tenant_id=str(ref.tenant_id),
            subject_id=str(ref.subject_id),
            category=ref.category,
            generation=ref.generation,
            key_id=f"{self.id}#{part}" if part else str(self.id),
            object_identity=obj,
        )


# The object identities content is bound to (crypto/FORMAT.md, DVKC 02), decided here
# once. Ids are uuid.UUID, whose text form is canonical (lowercase, hyphenated).


def record_object(name: str, version: int) -> ObjectIdentity:
    """One version of a record: its name as stored and its version number."""
    return ObjectIdentity(OBJECT_RECORD, name, version)


def artefact_object(artefact_id: uuid.UUID) -> ObjectIdentity:
    """An artefact: its stream and its sealed metadata."""
    return ObjectIdentity(OBJECT_ARTEFACT, str(artefact_id))


def subject_object(subject_id: uuid.UUID) -> ObjectIdentity:
    """A subject's own sealed values: its reference copy and restriction reason."""
    return ObjectIdentity(OBJECT_SUBJECT, str(subject_id))


@dataclass(frozen=True)
class DestroyedKey:
    id: uuid.UUID
    category: str
    destroyed_at: datetime


@dataclass(frozen=True)
class KeptKey:
    id: uuid.UUID
    category: str
    hold_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True)
class SubjectKeysToDestroy:
    """One `destroy_subject_keys` call: the subject's keys of `generation` (those
    `categories`; None: all) that no hold covers, their ledger rows naming `erasure_id`."""

    subject_id: uuid.UUID
    generation: int
    categories: tuple[str, ...] | None
    erasure_id: uuid.UUID | None


def subject_key_context(ref: SubjectKeyRef, kek_version: int) -> KeyContext:
    return KeyContext(
        purpose=PURPOSE_SUBJECT_KEY,
        tenant_id=str(ref.tenant_id),
        subject_id=str(ref.subject_id),
        category=ref.category,
        generation=ref.generation,
        key_id=str(ref.id),
        version=kek_version,
    )


def data_key_context(ref: SubjectKeyRef, data_key_id: uuid.UUID) -> KeyContext:
    return KeyContext(
        purpose=PURPOSE_DATA_KEY,
        tenant_id=str(ref.tenant_id),
        subject_id=str(ref.subject_id),
        category=ref.category,
        generation=ref.generation,
        key_id=str(data_key_id),
    )


class KeyRing:
    def __init__(self, root: RootKeyProvider, holds: HoldCheck) -> None:
        """`holds`: the legal-hold check every destroy path asks first (there is no key
        ring that destroys without one)."""
        self._root = root
        self.holds = holds
        self.keks = KekCache()

    async def _kek(self, tenant_id: uuid.UUID, version: int, wrapped: bytes | None) -> SecretBytes:
        if wrapped is None:
            # The row read with this use says destroyed: a copy cached before (in this or
            # any process) is never used, and leaves memory now.
            self.keks.drop(tenant_id, [version])
            raise KeyDestroyed("the key-encryption key was destroyed")
        cached = self.keks.get(tenant_id, version)
        if cached is not None:
            return cached
        kek = await asyncio.to_thread(
            self._root.unwrap, bytes(wrapped), kek_context(tenant_id, version)
        )
        self.keks.put(tenant_id, version, kek)
        return kek

    async def kek(self, conn: Connection, tenant_id: uuid.UUID, version: int) -> SecretBytes:
        wrapped = await conn.fetchval(Q.kek_by_version, tenant_id, version)
        return await self._kek(tenant_id, version, wrapped)

    async def subject_key_for_write(
        self,
        conn: Connection,
        tenant_id: uuid.UUID,
        subject_id: uuid.UUID,
        category: str,
        generation: int,
    ) -> SubjectKeyRef:
        """The live subject key for new data, created on first use."""
        row = await conn.fetchrow(Q.find_subject_key, tenant_id, subject_id, category, generation)
        if row is None:
            # The subject before the KEK, as every writer and the closure take them (the
            # new key's insert locks the subject anyway, but after the KEK, a cycle with a
            # closure holding the subject and waiting for the KEK: red team 21).
            await conn.execute(Q.lock_subject_for_new_key, tenant_id, subject_id)
            current = await conn.fetchrow(Q.current_kek_for_write, tenant_id)
            if current is None:
                raise KeyDestroyed("the tenant has no live key-encryption key")
            kek = await self._kek(tenant_id, current["version"], current["wrapped_key"])
            ref = SubjectKeyRef(tenant_id, uuid.uuid4(), subject_id, category, generation)
            wrapped = wrap_key(kek, generate_key(), subject_key_context(ref, current["version"]))
            await conn.execute(
                Q.insert_subject_key,
                tenant_id, ref.id, subject_id, category, generation, current["version"], wrapped,
            )  # fmt: skip
            # A concurrent writer may have won the insert; use whichever row exists.
            row = await conn.fetchrow(
                Q.find_subject_key, tenant_id, subject_id, category, generation
            )
        assert row is not None
        if row["wrapped_key"] is None:
            raise KeyDestroyed("this generation's subject key was destroyed")
        return SubjectKeyRef(tenant_id, row["id"], subject_id, category, generation)

    async def subject_key(
        self, conn: Connection, tenant_id: uuid.UUID, subject_key_id: uuid.UUID
    ) -> tuple[SubjectKeyRef, SecretBytes]:
        row = await conn.fetchrow(Q.subject_key_by_id, tenant_id, subject_key_id)
        if row is None:
            raise NotFound("no such key")
        ref = SubjectKeyRef(
            tenant_id, row["id"], row["subject_id"], row["category"], row["generation"]
        )
        return ref, await self._open_subject_key(
            ref, row["kek_version"], row["wrapped_key"], row["kek_wrapped"]
        )

    async def _open_subject_key(
        self, ref: SubjectKeyRef, kek_version: int, wrapped: bytes | None, kek_wrapped: bytes | None
    ) -> SecretBytes:
        if wrapped is None:
            raise KeyDestroyed("the subject key was destroyed")
        kek = await self._kek(ref.tenant_id, kek_version, kek_wrapped)
        return unwrap_key(kek, bytes(wrapped), subject_key_context(ref, kek_version))

    async def new_data_key(
        self, conn: Connection, subject_key: SubjectKeyRef, purpose: DataKeyPurpose
    ) -> DataKey:
        """A fresh data key for one artefact or record version (one per upload attempt,
        so a retried upload never reuses a key, salt or nonce)."""
        row = await conn.fetchrow(Q.subject_key_by_id, subject_key.tenant_id, subject_key.id)
        if row is None:
            raise NotFound("no such key")
        wrapping = await self._open_subject_key(
            subject_key, row["kek_version"], row["wrapped_key"], row["kek_wrapped"]
        )
        return await self._insert_data_key(conn, subject_key, wrapping, row["kek_version"], purpose)

    async def new_data_key_for_write(
        self,
        conn: Connection,
        tenant_id: uuid.UUID,
        subject_id: uuid.UUID,
        category: str,
        generation: int,
        purpose: DataKeyPurpose,
    ) -> DataKey:
        """`subject_key_for_write` then `new_data_key`, with one statement fewer when the
        subject key exists (the usual case): the key and its KEK come in one read."""
        row = await conn.fetchrow(
            Q.find_subject_key_with_kek, tenant_id, subject_id, category, generation
        )
        if row is None:
            created = await self.subject_key_for_write(
                conn, tenant_id, subject_id, category, generation
            )
            return await self.new_data_key(conn, created, purpose)
        if row["wrapped_key"] is None:
            raise KeyDestroyed("this generation's subject key was destroyed")
        ref = SubjectKeyRef(tenant_id, row["id"], subject_id, category, generation)
        wrapping = await self._open_subject_key(
            ref, row["kek_version"], row["wrapped_key"], row["kek_wrapped"]
        )
        return await self._insert_data_key(conn, ref, wrapping, row["kek_version"], purpose)

    async def _insert_data_key(
        self,
        conn: Connection,
        subject_key: SubjectKeyRef,
        wrapping: SecretBytes,
        subject_key_version: int,
        purpose: DataKeyPurpose,
    ) -> DataKey:
        """Store a new data key wrapped under `wrapping`, the subject key's bytes as read
        at `subject_key_version`: the database refuses it (SubjectChanged) if a rewrap
        has given the subject key new bytes since (migration 0018)."""
        data_key, wrapped = self._wrapped_data_key(subject_key, wrapping, purpose)
        await conn.execute(
            Q.insert_data_key, subject_key.tenant_id, data_key.id, subject_key.id, purpose,
            wrapped, subject_key_version,
        )  # fmt: skip
        return data_key

    @staticmethod
    def _wrapped_data_key(
        subject_key: SubjectKeyRef, wrapping: SecretBytes, purpose: DataKeyPurpose
    ) -> tuple[DataKey, bytes]:
        data_key_id = uuid.uuid4()
        key = generate_key()
        wrapped = wrap_key(wrapping, key, data_key_context(subject_key, data_key_id))
        return DataKey(data_key_id, purpose, subject_key, key), wrapped

    async def unstored_data_key(
        self,
        tenant_id: uuid.UUID,
        subject_id: uuid.UUID,
        category: str,
        generation: int,
        purpose: DataKeyPurpose,
        found: Any,
    ) -> tuple[DataKey, bytes]:
        """A fresh data key and its wrapped bytes, for a statement of the caller's that
        stores it with the row it encrypts. `found`: the live subject key as the caller
        read it (columns subject_key_id, kek_version, subject_wrapped, kek_wrapped)."""
        if found["subject_wrapped"] is None:
            raise KeyDestroyed("this generation's subject key was destroyed")
        ref = SubjectKeyRef(tenant_id, found["subject_key_id"], subject_id, category, generation)
        wrapping = await self._open_subject_key(
            ref, found["kek_version"], found["subject_wrapped"], found["kek_wrapped"]
        )
        return self._wrapped_data_key(ref, wrapping, purpose)

    async def data_key(
        self, conn: Connection, tenant_id: uuid.UUID, data_key_id: uuid.UUID
    ) -> DataKey:
        row = await conn.fetchrow(Q.data_key_by_id, tenant_id, data_key_id)
        if row is None:
            raise NotFound("no such key")
        return await self.open_data_key(tenant_id, row)

    async def open_data_key(self, tenant_id: uuid.UUID, row: Any) -> DataKey:
        """Unwrap a data key from a row with the columns of keys.sql `data_key_by_id`."""
        if row["id"] is None:
            raise NotFound("no such key")
        if row["wrapped_key"] is None:
            raise KeyDestroyed("the data key was destroyed")
        ref = SubjectKeyRef(
            tenant_id, row["subject_key_id"], row["subject_id"], row["category"], row["generation"]
        )
        subject = await self._open_subject_key(
            ref, row["kek_version"], row["subject_wrapped"], row["kek_wrapped"]
        )
        key = unwrap_key(subject, bytes(row["wrapped_key"]), data_key_context(ref, row["id"]))
        return DataKey(row["id"], row["purpose"], ref, key)

    async def destroy_data_key(
        self, conn: Connection, tenant_id: uuid.UUID, data_key_id: uuid.UUID, *,
        cleanup: bool = False,
    ) -> bool:  # fmt: skip
        """Crypto-shred one artefact or record version (a delete, retention), checked
        under the subject's row lock (see `check_destroyable`); `cleanup`: the key of an
        upload that never completed, which nothing keeps. Returns False if it was
        destroyed already."""
        owner = await conn.fetchrow(Q.data_key_subject, tenant_id, data_key_id)
        if owner is None:
            raise NotFound("no such key")
        await conn.execute(Q.lock_subject, tenant_id, owner["subject_id"])
        return await self.destroy_data_key_of_locked_subject(
            conn, tenant_id, owner["subject_id"], owner["category"], owner["generation"],
            data_key_id, cleanup=cleanup,
        )  # fmt: skip

    async def destroy_data_key_of_locked_subject(
        self,
        conn: Connection,
        tenant_id: uuid.UUID,
        subject_id: uuid.UUID,
        category: str,
        generation: int,
        data_key_id: uuid.UUID,
        *,
        cleanup: bool = False,
    ) -> bool:
        """`destroy_data_key` for a caller that already holds the subject's row lock and
        knows the key's subject, category and generation (from the row the key
        encrypts): two statements fewer."""
        if not cleanup:
            await self.check_destroyable(conn, tenant_id, subject_id, category, generation)
        return await conn.fetchval(Q.destroy_data_key, tenant_id, data_key_id) is not None

    async def check_destroyable(
        self, conn: Connection, tenant_id: uuid.UUID, subject_id: uuid.UUID, category: str,
        generation: int,
    ) -> None:  # fmt: skip
        """What keeps one artefact or record version from being destroyed one object at a
        time: the subject's restriction (Art. 18 freezes deletion), an erasure that covers
        its generation (only that erasure destroys what it keeps, by its holds and
        statutory retention), a hold in force (Conflict naming the holds). The caller holds
        the subject's row lock, which restrictions, erasure requests and holds also take;
        the state is read in a statement of its own, after the lock was granted."""
        state = await conn.fetchrow(Q.subject_deletion_state, tenant_id, subject_id)
        assert state is not None, "a data key's subject exists"
        if state["restricted_at"] is not None:
            raise RestrictedDeletion(
                "processing of this subject is restricted: its data cannot be deleted until "
                "the restriction is lifted"
            )
        if generation in state["erased_generations"]:
            raise RestrictedDeletion(
                "this data is kept after an erasure (a hold or statutory retention): only "
                "that erasure destroys it"
            )
        held = await self.holds.holds_covering(conn, tenant_id, subject_id, [category])
        if held:
            hold_ids = sorted({str(h) for ids in held.values() for h in ids})
            raise Conflict("a legal hold keeps this data", holds=hold_ids)

    async def destroy_subject_keys(
        self,
        conn: Connection,
        tenant_id: uuid.UUID,
        subject_id: uuid.UUID,
        generation: int,
        categories: Iterable[str] | None = None,
        *,
        erasure_id: uuid.UUID | None = None,
    ) -> tuple[list[DestroyedKey], list[KeptKey]]:
        """Destroy the generation's subject keys (all, or those categories) that no hold
        covers, each with its shred-ledger row (naming `erasure_id`, if one asked); report
        what was destroyed and what holds kept. The caller records its own state change
        in the same transaction. One statement (dv_destroy_subject_keys, migration 0033):
        the subject's row lock, its live keys, the hold check (dv_holds_covering) and each
        destroy, in that order, as this method sent them one by one before."""
        ask = SubjectKeysToDestroy(
            subject_id, generation, None if categories is None else tuple(categories), erasure_id
        )
        [outcome] = await self.destroy_many_subject_keys(conn, tenant_id, [ask])
        return outcome

    async def destroy_many_subject_keys(
        self, conn: Connection, tenant_id: uuid.UUID, asks: Sequence[SubjectKeysToDestroy]
    ) -> list[tuple[list[DestroyedKey], list[KeptKey]]]:
        """`destroy_subject_keys` for each of `asks` in one statement (keys.sql
        `destroy_many_subject_keys`: each is one call of dv_destroy_subject_keys, as it
        was one statement each): what each destroyed and what holds kept, in the order
        asked. The erasure executor shreds a batch with it (issue 19, fifth round: a
        statement per generation inside the batch's transaction).

        The asks are carried out in subject id order (one subject's in the order asked),
        since each locks its subject: every batch that locks several subjects takes them
        in that order (a rotation's rewrap batch, a closure pass), and an erasure batch
        that took them in its erasures' order could wait for such a batch while it waited
        for this one (PostgreSQL then aborts one of them)."""
        if not asks:
            return []
        # Python's UUID order is PostgreSQL's (both compare the 16 bytes); sorted() is
        # stable, so one subject's generations keep the order they were asked in.
        order = sorted(range(len(asks)), key=lambda i: asks[i].subject_id)
        sent = [asks[i] for i in order]
        rows = await conn.fetch(
            Q.destroy_many_subject_keys, tenant_id,
            [ask.subject_id for ask in sent], [ask.generation for ask in sent],
            [None if ask.categories is None else json.dumps(ask.categories) for ask in sent],
            [ask.erasure_id for ask in sent],
        )  # fmt: skip
        outcomes: list[tuple[list[DestroyedKey], list[KeptKey]]] = [([], []) for _ in asks]
        for row in rows:
            destroyed, kept = outcomes[order[row["n"] - 1]]
            if row["destroyed_at"] is not None:
                destroyed.append(DestroyedKey(row["key_id"], row["category"], row["destroyed_at"]))
            else:
                kept.append(KeptKey(row["key_id"], row["category"], tuple(row["hold_ids"])))
        return outcomes
