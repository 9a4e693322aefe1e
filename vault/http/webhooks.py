"""/v1/webhooks (admin scope): endpoints, test events, the delivery log and its replay."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vault.domain.scopes import Scope
from vault.domain.webhooks import check_description, parse_events, parse_webhook_url
from vault.errors import InvalidInput
from vault.http.auth import require
from vault.http.body import read_json_object
from vault.http.pages import page_after_time, page_params
from vault.http.params import encode_cursor_parts, path_uuid
from vault.http.render import json_response, rfc3339
from vault.http.state import vault_state
from vault.services.webhooks import WebhookRequest

_CREATE_FIELDS = {"url", "events", "description"}


def render_webhook(endpoint: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": endpoint["id"],
        "url": endpoint["url"],
        "events": list(endpoint["events"]),
        "description": endpoint["description"],
        "created_at": endpoint["created_at"],
    }


def render_delivery(delivery: dict[str, Any]) -> dict[str, Any]:
    attempts = delivery["attempts"]
    last = attempts[0] if attempts else None
    return {
        "id": delivery["id"],
        "event_id": delivery["event_id"],
        "type": delivery["type"],
        "status": delivery["status"],
        "created_at": delivery["created_at"],
        "delivered_at": delivery["delivered_at"],
        "next_attempt_at": delivery["next_attempt_at"] if delivery["status"] == "pending" else None,
        "attempt_count": delivery["attempt_count"],
        # The latest attempt's answer code and time (null before the first attempt).
        "response_code": last["response_code"] if last else None,
        "attempted_at": last["attempted_at"] if last else None,
        "attempts": [
            {
                "attempted_at": a["attempted_at"],
                "outcome": a["outcome"],
                "response_code": a["response_code"],
                "duration_ms": a["duration_ms"],
            }
            for a in attempts
        ],
    }


async def create_webhook(request: Request) -> Response:
    principal = await require(request, Scope.ADMIN)
    state = vault_state(request)
    body = await read_json_object(request)
    unknown = set(body) - _CREATE_FIELDS
    if unknown:
        first, *rest = sorted(unknown)
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}", field=first, also=rest)
    webhook_request = WebhookRequest(
        parse_webhook_url(
            body.get("url"), allow_private_networks=state.webhooks.allow_private_networks
        ),
        parse_events(body.get("events")),
        check_description(body.get("description")),
    )
    created = await state.webhooks.create(principal.tenant_id, webhook_request, principal.key_id)
    endpoint_id = created.endpoint["id"]
    return json_response(
        # Shown this once; the vault keeps it only wrapped under the tenant's key.
        {**render_webhook(created.endpoint), "secret": created.secret.reveal()},
        status=201,
        headers={"Cache-Control": "no-store", "Location": f"/v1/webhooks/{endpoint_id}"},
    )


async def list_webhooks(request: Request) -> Response:
    principal = await require(request, Scope.ADMIN)
    limit, after = page_params(request, set())
    endpoints = await vault_state(request).webhooks.list_endpoints(
        principal.tenant_id, page_after_time(after), limit
    )
    last = endpoints[-1] if len(endpoints) == limit else None
    cursor = encode_cursor_parts(rfc3339(last["created_at"]), str(last["id"])) if last else None
    return json_response({"items": [render_webhook(e) for e in endpoints], "next_cursor": cursor})


async def show_webhook(request: Request) -> Response:
    principal = await require(request, Scope.ADMIN)
    endpoint = await vault_state(request).webhooks.get(
        principal.tenant_id, path_uuid(request.path_params["webhook_id"])
    )
    return json_response(render_webhook(endpoint))


async def delete_webhook(request: Request) -> Response:
    principal = await require(request, Scope.ADMIN)
    await vault_state(request).webhooks.delete(
        principal.tenant_id, path_uuid(request.path_params["webhook_id"]), principal.key_id
    )
    return Response(status_code=204)


async def test_webhook(request: Request) -> Response:
    principal = await require(request, Scope.ADMIN)
    delivery = await vault_state(request).webhooks.send_test(
        principal.tenant_id, path_uuid(request.path_params["webhook_id"])
    )
    return json_response(render_delivery(delivery), status=202)


async def list_deliveries(request: Request) -> Response:
    principal = await require(request, Scope.ADMIN)
    limit, after = page_params(request, {"status"})
    deliveries = await vault_state(request).webhooks.deliveries(
        principal.tenant_id,
        path_uuid(request.path_params["webhook_id"]),
        status=request.query_params.get("status"),
        after=page_after_time(after),
        limit=limit,
    )
    last = deliveries[-1] if len(deliveries) == limit else None
    cursor = encode_cursor_parts(rfc3339(last["created_at"]), str(last["id"])) if last else None
    return json_response({"items": [render_delivery(d) for d in deliveries], "next_cursor": cursor})


async def retry_delivery(request: Request) -> Response:
    principal = await require(request, Scope.ADMIN)
    delivery = await vault_state(request).webhooks.retry(
        principal.tenant_id,
        path_uuid(request.path_params["webhook_id"]),
        path_uuid(request.path_params["delivery_id"]),
    )
    return json_response(render_delivery(delivery), status=202)
