"""Playback links: minted by a read key for one artefact, used by whoever holds the URL.

A link carries nothing but its token: not the tenant, the subject, its reference or the
artefact (the URL must not leak the subject reference, and must not be turned into a link
to anything else). Its row names the artefact and the minting key; every use reads the
row afresh in the tenant's transaction, and a link is dead, all alike, once it

- has expired (the database's clock),
- was minted by a key since revoked or expired, or of a tenant since closed,
- names an artefact since deleted, or of a subject since erased or restricted: the link
  reads as the read scope does, whatever scope minted it.

A use is a transfer of the minting key (vault/http/transfers.py): a stream running when
its data key is destroyed or the minting key revoked is cut like any download.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

from vault.db.database import Database
from vault.db.sql import Queries
from vault.domain.playback_links import new_token, token_shaped
from vault.domain.scopes import Scope
from vault.domain.secret_text import SecretText
from vault.domain.subject_refs import SubjectRef
from vault.errors import KeyNoLongerLive
from vault.services.api_keys import Principal
from vault.services.artefacts import ArtefactService
from vault.services.subjects import SubjectAccess

Q = Queries("playback_links")

# What a link may read: what the read scope reads. A compliance key reads restricted and
# kept data; a link it mints must not hand that to a browser.
LINK_ACCESS = SubjectAccess(may_read_restricted=False)


def token_hash(token: str) -> bytes:
    # The token is 256 random bits: a plain hash is enough, no pepper is needed.
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


@dataclass(frozen=True)
class MintedLink:
    token: SecretText
    expires_at: datetime


@dataclass(frozen=True)
class LinkUse:
    """What a presented link names: the minting key (the use is its access), the
    artefact and its subject's pseudonymous id, and whether it may be used now (not
    expired; its key not revoked or expired, its tenant not closed). Whether the artefact
    is still readable is the read path's to say."""

    principal: Principal
    artefact_id: uuid.UUID
    subject_ref_hash: bytes
    expires_at: datetime
    usable: bool


class PlaybackLinkService:
    def __init__(self, db: Database, artefacts: ArtefactService) -> None:
        self._db = db
        self._artefacts = artefacts

    async def mint(
        self, principal: Principal, ref: SubjectRef, artefact_id: uuid.UUID, lifetime: int
    ) -> MintedLink:
        """A new link to an artefact the read scope may read now (NotFound, Gone or
        Restricted otherwise, as reading it would answer). The token is returned once and
        stored only as its hash."""
        artefact = await self._artefacts.describe(
            principal.tenant_id, None, ref, artefact_id, LINK_ACCESS
        )
        token = new_token()
        async with self._db.tenant_tx(principal.tenant_id) as conn:
            expires_at: datetime = await conn.fetchval(
                Q.insert, token_hash(token.reveal()), uuid.uuid4(), principal.tenant_id,
                artefact.id, principal.key_id, lifetime,
            )  # fmt: skip
        return MintedLink(token, expires_at)

    async def resolve(self, token: str) -> LinkUse | None:
        """The link `token` names, usable or not; None when it names none (or is not even
        shaped like a token)."""
        if not token_shaped(token):
            return None
        found = await self._db.untenanted_fetchrow(Q.find, token_hash(token))
        if found is None:
            return None
        tenant_id, row, key_live = found["tenant_id"], None, True
        try:
            async with self._db.tenant_tx(tenant_id) as conn:
                row = await conn.fetchrow(Q.state, tenant_id, found["id"])
                if row is not None:
                    # Revoked, or its tenant closed: DV401 (the one rule, migration 0011).
                    await conn.execute(Q.require_live_key, tenant_id, row["key_id"])
        except KeyNoLongerLive:
            key_live = False
        if row is None:
            return None  # deleted by the sweeper between the two reads
        principal = Principal(
            tenant_id=tenant_id,
            key_id=row["key_id"],
            prefix=row["key_prefix"],
            scopes=frozenset(Scope(s) for s in row["key_scopes"]),
        )
        usable = key_live and row["unexpired"] and row["key_unexpired"]
        return LinkUse(
            principal, row["artefact_id"], bytes(row["ref_hash"]), row["expires_at"], usable
        )


async def delete_expired_links(db: Database, tenant_id: uuid.UUID, now: datetime) -> int:
    """Links past their expiry: hygiene for the sweeper, since a use refuses them anyway.
    The access log keeps every mint and use."""
    async with db.tenant_tx(tenant_id) as conn:
        status = await conn.execute(Q.delete_expired, tenant_id, now)
    return int(status.split()[-1])
