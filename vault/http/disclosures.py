"""/v1/disclosures (compliance scope): record that data was handed to a third party, list
and read the records."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vault.domain.scopes import Scope
from vault.domain.subject_refs import normalize_ref
from vault.errors import InvalidInput
from vault.http.listed_subjects import note_listed_disclosures
from vault.http.models.disclosures import (
    Disclosure,
    DisclosureListQuery,
    DisclosurePage,
    DisclosureRecord,
)
from vault.http.operation import Tag, created, ok, operation, render
from vault.http.pages import page_after_time
from vault.http.params import decode_cursor_parts, encode_cursor_parts, parse_time, path_uuid
from vault.http.render import rfc3339
from vault.http.state import vault_state
from vault.http.transfers import watch_transfer
from vault.services.api_keys import Principal
from vault.services.disclosures import Recorder

_TIMES = ("disclosed_at", "withhold_from_subject_until")


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string", field=name)
    return value


def _hold_id(body: dict[str, Any]) -> uuid.UUID | None:
    value = _text(body, "hold_id")
    if value is None or value == "":
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInput("hold_id must be a UUID", field="hold_id") from None


@operation(
    "recordDisclosure", tag=Tag.DISCLOSURES,
    summary="Record that data was handed to a third party (a court, the police, a tax "
    "authority)",
    scope=Scope.COMPLIANCE,
    answers={201: created(Disclosure, "/v1/disclosures/{disclosure_id}", "Recorded")},
    body_as_sent=DisclosureRecord,
    description="Entries are append-only and hash-chained per tenant. Without subject_ref, a "
    "hold_id naming one subject names it. A description is sealed under the subject's keys "
    "(422 for a subject the vault has no keys of) and is shredded with them by an erasure; "
    "the entry itself outlives the erasure with only subject_ref_hash. disclosed_at may not "
    "be in the future; withhold_from_subject_until must come after it. The subject's export "
    "lists the disclosure once withhold_from_subject_until has passed. Every wrong field is "
    "named at once (errors).",
)  # fmt: skip
async def record_disclosure(request: Request, caller: Principal, body: dict[str, Any]) -> Response:
    # The service checks the terms, every wrong field at once (the console's form shares
    # those checks); here only what must be parsed before it: times, the hold, the subject.
    state = vault_state(request)
    errors: dict[str, str] = {}
    values: dict[str, object] = dict(body)
    for name in _TIMES:
        try:
            values[name] = parse_time(name, body.get(name))
        except InvalidInput as exc:
            values[name], errors[name] = None, exc.detail
    hold_id = None
    try:
        hold_id = _hold_id(body)
    except InvalidInput as exc:
        errors["hold_id"] = exc.detail
    ref_hash = None
    try:
        raw_ref = _text(body, "subject_ref")
        if raw_ref is not None:
            ref_hash = await state.subject_refs.hash(caller.tenant_id, normalize_ref(raw_ref))
    except InvalidInput as exc:
        errors["subject_ref"] = exc.detail
    request.state.subject_ref_hash = ref_hash
    # A transfer (vault/http/transfers.py), as every answer with data decrypted under a
    # subject's key: the answer opens the subject's reference copy and the description.
    disclosure = await state.disclosures.record(
        caller.tenant_id, ref_hash, hold_id, values,
        Recorder(caller.key_id, request.state.request_id), errors,
        watch_transfer(request, caller),
    )  # fmt: skip
    # The hold's subject, when the disclosure named only the hold.
    request.state.subject_ref_hash = disclosure.subject_ref_hash
    return render(
        Disclosure.of(disclosure),
        status=201,
        headers={"Location": f"/v1/disclosures/{disclosure.id}"},
    )


@operation(
    "listDisclosures", tag=Tag.DISCLOSURES, summary="List disclosures, newest disclosed first",
    scope=Scope.COMPLIANCE, answers={200: ok(DisclosurePage)},
)  # fmt: skip
async def list_disclosures(
    request: Request, caller: Principal, query: DisclosureListQuery
) -> Response:
    state = vault_state(request)
    ref_hash = None
    if query.subject_ref is not None:
        ref_hash = await state.subject_refs.hash(caller.tenant_id, normalize_ref(query.subject_ref))
        request.state.subject_ref_hash = ref_hash
    items = await state.disclosures.search(
        caller.tenant_id, subject_ref_hash=ref_hash, hold_id=query.hold_id,
        since=query.since, until=query.until,
        after=page_after_time(decode_cursor_parts(query.cursor, 2)), limit=query.limit,
        lease=watch_transfer(request, caller),
    )  # fmt: skip
    # Without subject_ref the page may carry data of many subjects: logged under each.
    note_listed_disclosures(request, items)
    last = items[-1] if len(items) == query.limit else None
    cursor = encode_cursor_parts(rfc3339(last.disclosed_at), str(last.id)) if last else None
    return render(DisclosurePage([Disclosure.of(d) for d in items], cursor))


@operation(
    "getDisclosure", tag=Tag.DISCLOSURES, summary="One disclosure",
    scope=Scope.COMPLIANCE, answers={200: ok(Disclosure)}, errors=(404,),
)  # fmt: skip
async def show_disclosure(request: Request, caller: Principal) -> Response:
    disclosure = await vault_state(request).disclosures.get(
        caller.tenant_id, path_uuid(request.path_params["disclosure_id"]),
        watch_transfer(request, caller),
    )  # fmt: skip
    request.state.subject_ref_hash = disclosure.subject_ref_hash
    return render(Disclosure.of(disclosure))
