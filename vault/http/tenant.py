"""/v1/tenant (admin scope)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vault.domain.scopes import Scope
from vault.http.auth import require
from vault.http.body import read_json_object
from vault.http.render import json_response
from vault.http.state import vault_state
from vault.services.tenants import get_tenant, update_settings


async def patch_settings(request: Request) -> Response:
    principal = await require(request, Scope.ADMIN)
    state = vault_state(request)
    patch = await read_json_object(request)
    await update_settings(state.db, principal.tenant_id, patch, state.settings.max_artefact_bytes)
    tenant = await get_tenant(state.db, principal.tenant_id)
    return json_response(tenant["settings"])


async def show_tenant(request: Request) -> Response:
    principal = await require(request, Scope.ADMIN)
    tenant = await get_tenant(vault_state(request).db, principal.tenant_id)
    return json_response(tenant)
