"""An answer that carries data of several subjects is logged under each of them.

A listing across subjects (disclosures without `subject_ref`; the console's page of a
hold) opens each listed subject's reference copy and description with that subject's
key. `GET /v1/access-log?subject_ref=X` must find such a request as it finds one about X
alone (docs/runbook.md, "Show that subject X was erased"), so the handler notes the
subjects here and the access-log row of the request (vault/http/middleware.py) brings one
further row per subject, same request id, 0 bytes, committed with it. Only the keyed hash
the vault already logs is noted, never a reference.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request

from vault.services.disclosures import Disclosure

# The request's noted subjects in the ASGI scope's state, in order of first appearance
# (a dict used as an ordered set).
LISTED_SUBJECTS = "listed_subjects"


def note_listed_disclosures(request: Request, disclosures: Iterable[Disclosure]) -> None:
    """Note the subject of every disclosure whose data the answer carries opened."""
    listed: dict[bytes, None] = request.scope.setdefault("state", {}).setdefault(
        LISTED_SUBJECTS, {}
    )
    for disclosure in disclosures:
        ref_hash = disclosure.opened_subject
        if ref_hash is not None:
            listed[ref_hash] = None


def listed_subjects(state: dict[str, object]) -> tuple[bytes, ...]:
    listed = state.get(LISTED_SUBJECTS)
    return tuple(listed) if isinstance(listed, dict) else ()
