"""/v1/api-keys (admin scope)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vault.domain.scopes import Scope, parse_scopes
from vault.errors import InvalidInput
from vault.http.auth import require
from vault.http.body import optional_list, optional_str, read_json_object
from vault.http.params import parse_time, path_uuid
from vault.http.render import json_response
from vault.http.state import vault_state
from vault.services.api_keys import parse_cidrs


async def create_api_key(request: Request) -> Response:
    principal = await require(request, Scope.ADMIN)
    body = await read_json_object(request)
    unknown = set(body) - {"name", "scopes", "allowed_cidrs", "expires_at", "secret", "owner"}
    if unknown:
        first, *rest = sorted(unknown)
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}", field=first, also=rest)
    name = optional_str(body, "name")
    if name is None:
        raise InvalidInput("name is required", field="name")
    scopes = parse_scopes(optional_list(body, "scopes"))
    created = await vault_state(request).api_keys.create(
        principal.tenant_id,
        name=name,
        scopes=scopes,
        allowed_cidrs=parse_cidrs(optional_list(body, "allowed_cidrs")),
        expires_at=parse_time("expires_at", body.get("expires_at")),
        own_secret=optional_str(body, "secret"),
        created_by=principal.key_id,
        owner=optional_str(body, "owner"),
    )
    return json_response(
        {
            "id": created.id,
            "prefix": created.prefix,
            "name": created.name,
            "owner": created.owner,
            "scopes": created.scopes,
            "allowed_cidrs": [str(n) for n in created.allowed_cidrs],
            "expires_at": created.expires_at,
            "created_at": created.created_at,
            # Shown this once; the vault keeps only a keyed hash.
            "secret": created.token.reveal(),
        },
        status=201,
        headers={"Cache-Control": "no-store", "Location": f"/v1/api-keys/{created.id}"},
    )


async def list_api_keys(request: Request) -> Response:
    principal = await require(request, Scope.ADMIN)
    keys = await vault_state(request).api_keys.list(principal.tenant_id)
    return json_response({"items": keys})


async def revoke_api_key(request: Request) -> Response:
    principal = await require(request, Scope.ADMIN)
    key_id = path_uuid(request.path_params["key_id"])
    await vault_state(request).api_keys.revoke(principal.tenant_id, key_id)
    return Response(status_code=204)
