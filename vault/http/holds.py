"""/v1/holds (compliance scope): place, list, read, amend and release legal holds."""

from __future__ import annotations

from typing import Any

from msgspec import UNSET
from starlette.requests import Request
from starlette.responses import Response

from vault.domain.scopes import Scope
from vault.domain.subject_refs import normalize_ref
from vault.errors import InvalidInput
from vault.http.models.holds import (
    CategoryImpact,
    Hold,
    HoldAmendment,
    HoldImpact,
    HoldListQuery,
    HoldPage,
    HoldPlacement,
    HoldRelease,
)
from vault.http.operation import Answer, Tag, created, ok, operation, render
from vault.http.pages import page_after_time
from vault.http.params import decode_cursor_parts, encode_cursor_parts, path_uuid
from vault.http.render import rfc3339
from vault.http.state import vault_state
from vault.services.api_keys import Principal
from vault.services.holds import Actor, HoldRequest


def _actor(request: Request, caller: Principal) -> Actor:
    ip = request.state.client_ip
    return Actor(caller.key_id, str(ip) if ip is not None else None)


@operation(
    "placeHold", tag=Tag.HOLDS,
    summary="Place a legal hold on a subject (or the whole tenant), all or some categories",
    scope=Scope.COMPLIANCE, answers={201: created(Hold, "/v1/holds/{hold_id}", "Placed")},
    description="categories must be ones the tenant knows; expires_at in the future.",
)  # fmt: skip
async def place_hold(request: Request, caller: Principal, body: HoldPlacement) -> Response:
    state = vault_state(request)
    ref = (
        normalize_ref(body.subject_ref, field="subject_ref")
        if body.subject_ref is not None
        else None
    )
    ref_hash = await state.subject_refs.hash(caller.tenant_id, ref) if ref else None
    request.state.subject_ref_hash = ref_hash
    hold = await state.holds.place(
        caller.tenant_id,
        HoldRequest(
            ref_hash, tuple(body.categories) if body.categories is not None else None,
            body.reason.value, body.reference, body.note, body.expires_at,
        ),
        _actor(request, caller),
    )  # fmt: skip
    return render(
        Hold.of(hold, ref.reveal() if ref else None),
        status=201,
        headers={"Location": f"/v1/holds/{hold['id']}"},
    )


@operation(
    "listHolds", tag=Tag.HOLDS, summary="List holds, newest first",
    scope=Scope.COMPLIANCE, answers={200: ok(HoldPage)},
)  # fmt: skip
async def list_holds(request: Request, caller: Principal, query: HoldListQuery) -> Response:
    state = vault_state(request)
    ref_hash = None
    if query.subject_ref is not None:
        ref_hash = await state.subject_refs.hash(caller.tenant_id, normalize_ref(query.subject_ref))
    holds = await state.holds.list(
        caller.tenant_id, active=query.active, subject_ref_hash=ref_hash,
        after=page_after_time(decode_cursor_parts(query.cursor, 2)), limit=query.limit,
        reason=query.reason.value if query.reason else None,
    )  # fmt: skip
    last = holds[-1] if len(holds) == query.limit else None
    cursor = encode_cursor_parts(rfc3339(last["placed_at"]), str(last["id"])) if last else None
    return render(HoldPage([Hold.of(h) for h in holds], cursor))


@operation(
    "getHold", tag=Tag.HOLDS, summary="A hold with its journal",
    scope=Scope.COMPLIANCE, answers={200: ok(Hold)}, errors=(404,),
)  # fmt: skip
async def show_hold(request: Request, caller: Principal) -> Response:
    hold = await vault_state(request).holds.get(
        caller.tenant_id, path_uuid(request.path_params["hold_id"])
    )
    return render(Hold.of(hold))


@operation(
    "getHoldImpact", tag=Tag.HOLDS,
    summary="What releasing this hold would shred now, by category (counts)",
    scope=Scope.COMPLIANCE, answers={200: ok(HoldImpact)}, errors=(404,),
)  # fmt: skip
async def hold_impact(request: Request, caller: Principal) -> Response:
    rows = await vault_state(request).holds.impact(
        caller.tenant_id, path_uuid(request.path_params["hold_id"])
    )
    return render(
        HoldImpact({r["category"]: CategoryImpact(r["keys"], r["erasures"]) for r in rows})
    )


@operation(
    "amendHold", tag=Tag.HOLDS, summary="Extend the expiry or change the note",
    scope=Scope.COMPLIANCE, answers={200: ok(Hold)}, errors=(404, 409),
    description="An expiry can only move later (or be removed), and a hold without one "
    "cannot be given one: 422 otherwise (that would end the hold sooner by one hand; "
    "release it instead).",
)  # fmt: skip
async def amend_hold(request: Request, caller: Principal, body: HoldAmendment) -> Response:
    changes: dict[str, Any] = {}
    if body.expires_at is not UNSET:
        changes["expires_at"] = body.expires_at
    if body.note is not UNSET:
        changes["note"] = body.note
    if not changes:
        raise InvalidInput("send expires_at and/or note", field="(body)")
    hold = await vault_state(request).holds.amend(
        caller.tenant_id, path_uuid(request.path_params["hold_id"]), changes,
        _actor(request, caller),
    )  # fmt: skip
    return render(Hold.of(hold))


@operation(
    "releaseHold", tag=Tag.HOLDS,
    summary="Release a hold (litigation and law_enforcement: the first call answers 202, a "
    "second, different compliance key releases)",
    scope=Scope.COMPLIANCE,
    answers={
        200: Answer(
            "Released: released_at and released_by are set; erasures waiting on the hold "
            "proceed", Hold,
        ),
        202: Answer(
            "Release requested, awaiting a second compliance key (litigation, "
            "law_enforcement): release_requested_by and release_requested_at are set, "
            "released_at is null", Hold,
        ),
    },
    errors=(404, 409),
    description="409 when the hold is released already, or when the confirming key is not "
    "a second person: it must name another owner, and neither key may have been created by "
    "the other or by a key of the other's owner. A request lapses after 7 days "
    "(release_request_expires_at).",
)  # fmt: skip
async def release_hold(request: Request, caller: Principal, body: HoldRelease) -> Response:
    released, hold = await vault_state(request).holds.release(
        caller.tenant_id, path_uuid(request.path_params["hold_id"]), body.reason,
        _actor(request, caller),
    )  # fmt: skip
    return render(Hold.of(hold), status=200 if released else 202)


@operation(
    "withdrawHoldRelease", tag=Tag.HOLDS,
    summary="Withdraw a release request that awaits its second person",
    scope=Scope.COMPLIANCE, answers={200: ok(Hold)}, errors=(404, 409),
)  # fmt: skip
async def withdraw_hold_release(request: Request, caller: Principal) -> Response:
    hold = await vault_state(request).holds.withdraw_release(
        caller.tenant_id, path_uuid(request.path_params["hold_id"]), _actor(request, caller)
    )
    return render(Hold.of(hold))
