"""What subject endpoints share: the caller's access to restricted data, and noting the
pseudonymous subject id for the access log."""

from __future__ import annotations

import uuid

from starlette.requests import Request

from vault.domain.scopes import Scope
from vault.domain.subject_refs import SubjectRef
from vault.http.state import vault_state
from vault.services.api_keys import Principal
from vault.services.subjects import SubjectAccess


def access_for(principal: Principal) -> SubjectAccess:
    return SubjectAccess(may_read_restricted=Scope.COMPLIANCE in principal.scopes)


async def note_subject(request: Request, tenant_id: uuid.UUID, ref: SubjectRef) -> bytes:
    """The access log records the keyed hash of the reference, never the reference."""
    ref_hash = await vault_state(request).subject_refs.hash(tenant_id, ref)
    request.state.subject_ref_hash = ref_hash
    return ref_hash
