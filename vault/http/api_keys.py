"""/v1/api-keys (admin scope)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vault.domain.scopes import Scope
from vault.http.models.tenant import ApiKey, ApiKeyCreation, ApiKeyList, CreatedApiKey
from vault.http.operation import Tag, created, no_content, ok, operation, render
from vault.http.params import path_uuid
from vault.http.state import vault_state
from vault.services.api_keys import Principal, parse_cidrs


@operation(
    "createApiKey", tag=Tag.API_KEYS,
    summary="Create an API key; the secret is shown in this answer only",
    scope=Scope.ADMIN, answers={201: created(CreatedApiKey, "/v1/api-keys/{key_id}")},
    errors=(409,),
    description="owner is required for keys with the compliance or admin scope. secret: "
    "bring your own (at least 32 characters, not guessable), else the vault makes one. 409 "
    "when a key of this tenant has used the secret before; 429 after 20 own secrets in an "
    "hour.",
)  # fmt: skip
async def create_api_key(request: Request, caller: Principal, body: ApiKeyCreation) -> Response:
    created_key = await vault_state(request).api_keys.create(
        caller.tenant_id,
        name=body.name,
        scopes=frozenset(body.scopes),
        allowed_cidrs=parse_cidrs(body.allowed_cidrs),
        expires_at=body.expires_at,
        own_secret=body.secret,
        created_by=caller.key_id,
        owner=body.owner,
    )
    return render(
        CreatedApiKey.of(created_key),
        status=201,
        headers={"Cache-Control": "no-store", "Location": f"/v1/api-keys/{created_key.id}"},
    )


@operation(
    "listApiKeys", tag=Tag.API_KEYS, summary="List the tenant's API keys (no secrets)",
    scope=Scope.ADMIN, answers={200: ok(ApiKeyList)},
)  # fmt: skip
async def list_api_keys(request: Request, caller: Principal) -> Response:
    keys = await vault_state(request).api_keys.list(caller.tenant_id)
    return render(ApiKeyList([ApiKey.of(row) for row in keys]))


@operation(
    "revokeApiKey", tag=Tag.API_KEYS, summary="Revoke a key; effective on the next request",
    scope=Scope.ADMIN, answers={204: no_content("Revoked")}, errors=(404, 409),
    description="409 for the tenant's last admin key: create another admin key first.",
)  # fmt: skip
async def revoke_api_key(request: Request, caller: Principal) -> Response:
    key_id = path_uuid(request.path_params["key_id"])
    vault = vault_state(request)
    await vault.api_keys.revoke(caller.tenant_id, key_id)
    # In the shred ledger before the answer: a restored backup keeps the key revoked.
    await vault.ledger.make_durable(
        "api_key_ledger_entry_deferred", tenant_id=str(caller.tenant_id), key_id=str(key_id)
    )
    return Response(status_code=204)
