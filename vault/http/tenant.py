"""/v1/tenant (admin scope)."""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response

from vault.domain.scopes import Scope
from vault.http.auth import require
from vault.http.body import optional_str, read_json_object
from vault.http.render import json_response
from vault.http.state import vault_state
from vault.services.closure import cancel_closure, request_closure
from vault.services.tenants import get_tenant, update_settings


async def patch_settings(request: Request) -> Response:
    principal = await require(request, Scope.ADMIN)
    state = vault_state(request)
    patch = await read_json_object(request)
    await update_settings(
        state.db, principal.tenant_id, patch, state.settings.max_artefact_bytes,
        timedelta(days=state.settings.closure_delay_days),
    )  # fmt: skip
    tenant = await get_tenant(state.db, principal.tenant_id)
    return json_response(tenant["settings"])


async def request_closure_endpoint(request: Request) -> Response:
    principal = await require(request, Scope.ADMIN)
    body = await read_json_object(request)
    vault = vault_state(request)
    state = await request_closure(
        vault.db,
        principal.tenant_id,
        principal.key_id,
        optional_str(body, "reason") or "",
        timedelta(days=vault.settings.closure_delay_days),
    )
    return json_response(_closure(state), status=202)


async def cancel_closure_endpoint(request: Request) -> Response:
    principal = await require(request, Scope.ADMIN)
    state = await cancel_closure(vault_state(request).db, principal.tenant_id)
    return json_response(_closure(state))


def _closure(state: dict[str, object]) -> dict[str, object]:
    return {
        "status": state["status"],
        "closure_requested_at": state["closure_requested_at"],
        "closure_due_at": state["closure_due_at"],
        "closed_at": state["closed_at"],
    }


async def show_tenant(request: Request) -> Response:
    principal = await require(request, Scope.ADMIN)
    tenant = await get_tenant(vault_state(request).db, principal.tenant_id)
    return json_response(tenant)
