"""/v1/tenant (admin scope): the tenant, its settings, its closure."""

from __future__ import annotations

from datetime import timedelta

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from vault.domain.scopes import Scope
from vault.http.models.tenant import Closure, ClosureRequest, Settings, SettingsChange, Tenant
from vault.http.operation import Answer, Tag, ok, operation, render
from vault.http.state import vault_state
from vault.services.api_keys import Principal
from vault.services.closure import cancel_closure, request_closure
from vault.services.tenants import get_tenant, update_settings


@operation(
    "getTenant", tag=Tag.TENANT, summary="The calling key's tenant and its settings",
    scope=Scope.ADMIN, answers={200: ok(Tenant)},
)  # fmt: skip
async def show_tenant(request: Request, caller: Principal) -> Response:
    tenant = await get_tenant(vault_state(request).db, caller.tenant_id)
    return render(
        Tenant(
            tenant.id, tenant.slug, tenant.status,  # type: ignore[arg-type]
            tenant.created_at, tenant.closure_due_at, Settings.of(tenant.settings),
        )
    )  # fmt: skip


@operation(
    "updateTenantSettings", tag=Tag.TENANT,
    summary="Change settings; fields left out stay as they were. 200 with all settings",
    scope=Scope.ADMIN, answers={200: ok(Settings)},
    description="retention: {category: {delete_after_days, keep_at_least_days}} (days or "
    "null); erasure_grace_hours 0-696; erasure_rate_limit_per_hour an integer >= 1 or null; "
    "max_artefact_bytes: {category: bytes or null}, the tenant's own limit per category "
    "below the deployment's. Shortening or removing keep_at_least_days binds data written "
    "before only after the closure delay: see pending.",
)  # fmt: skip
async def patch_settings(request: Request, caller: Principal, body: SettingsChange) -> Response:
    state = vault_state(request)
    patch = msgspec.to_builtins(body)
    updated = await update_settings(
        state.db, caller.tenant_id, patch, state.settings.max_artefact_bytes,
        timedelta(days=state.settings.closure_delay_days),
    )  # fmt: skip
    if "retention" in patch:
        # In the shred ledger before the answer: a restored backup keeps the new policy.
        await state.ledger.make_durable(
            "retention_ledger_entry_deferred", tenant_id=str(caller.tenant_id)
        )
    return render(Settings.of(updated))


@operation(
    "requestTenantClosure", tag=Tag.TENANT,
    summary="Schedule destruction of all the tenant's keys after the closure delay (holds "
    "keep what they cover)",
    scope=Scope.ADMIN, answers={202: Answer("Scheduled", Closure)},
    errors=(409,), description="202 with status closing and closure_due_at. 409 when the "
    "tenant is already closing or closed.",
)  # fmt: skip
async def request_closure_endpoint(
    request: Request, caller: Principal, body: ClosureRequest
) -> Response:
    vault = vault_state(request)
    state = await request_closure(
        vault.db, caller.tenant_id, caller.key_id, body.reason,
        timedelta(days=vault.settings.closure_delay_days),
    )  # fmt: skip
    # In the shred ledger before the answer: a restored backup keeps the closure.
    await vault.ledger.make_durable(
        "closure_ledger_entry_deferred", tenant_id=str(caller.tenant_id)
    )
    return render(Closure.of(state), status=202)


@operation(
    "cancelTenantClosure", tag=Tag.TENANT,
    summary="Cancel a scheduled closure before its delay has passed: 200 with status active",
    scope=Scope.ADMIN, answers={200: ok(Closure)}, errors=(409,),
)  # fmt: skip
async def cancel_closure_endpoint(request: Request, caller: Principal) -> Response:
    vault = vault_state(request)
    state = await cancel_closure(vault.db, caller.tenant_id)
    await vault.ledger.make_durable(
        "closure_ledger_entry_deferred", tenant_id=str(caller.tenant_id)
    )
    return render(Closure.of(state))
