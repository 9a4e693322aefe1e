"""/v1/tenant (admin scope)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vault.domain.scopes import Scope
from vault.http.auth import require
from vault.http.render import json_response
from vault.http.state import vault_state
from vault.services.tenants import get_tenant


async def show_tenant(request: Request) -> Response:
    principal = await require(request, Scope.ADMIN)
    tenant = await get_tenant(vault_state(request).db, principal.tenant_id)
    return json_response(tenant)
