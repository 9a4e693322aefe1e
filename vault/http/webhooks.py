"""/v1/webhooks (admin scope): endpoints, test events, the delivery log and its replay."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vault.domain.scopes import Scope
from vault.domain.webhooks import (
    MAX_WEBHOOKS_PER_TENANT,
    check_description,
    parse_events,
    parse_webhook_url,
)
from vault.http.models.common import PageQuery
from vault.http.models.webhooks import (
    Delivery,
    DeliveryListQuery,
    DeliveryPage,
    Webhook,
    WebhookCreate,
    WebhookCreated,
    WebhookPage,
)
from vault.http.operation import Answer, Tag, created, no_content, ok, operation, render
from vault.http.pages import page_after_time
from vault.http.params import decode_cursor_parts, encode_cursor_parts, path_uuid
from vault.http.render import rfc3339
from vault.http.state import vault_state
from vault.services.api_keys import Principal
from vault.services.webhooks import WebhookRequest

_QUEUED = Answer("Queued: the delivery, to be attempted at once", Delivery)


@operation(
    "createWebhook", tag=Tag.WEBHOOKS,
    summary="Register a webhook endpoint; the signing secret is shown in this answer only",
    scope=Scope.ADMIN,
    answers={201: created(WebhookCreated, "/v1/webhooks/{webhook_id}")},
    errors=(409,), body_as_sent=WebhookCreate,
    description=f"At most {MAX_WEBHOOKS_PER_TENANT} endpoints per tenant (409 beyond). "
    "Deliveries: POST of {type, timestamp, data} with the Standard Webhooks headers "
    "webhook-id, webhook-timestamp and webhook-signature; any 2xx within 10 s is success, "
    "otherwise retried with backoff for over 24 hours.",
)  # fmt: skip
async def create_webhook(request: Request, caller: Principal, body: dict[str, Any]) -> Response:
    # Checked by the domain's parsers, whose messages say what a receiver URL may be.
    state = vault_state(request)
    webhook_request = WebhookRequest(
        parse_webhook_url(
            body.get("url"), allow_private_networks=state.webhooks.allow_private_networks
        ),
        parse_events(body.get("events")),
        check_description(body.get("description")),
    )
    made = await state.webhooks.create(caller.tenant_id, webhook_request, caller.key_id)
    endpoint = made.endpoint
    shown = WebhookCreated(
        id=endpoint["id"], url=endpoint["url"], events=list(endpoint["events"]),
        description=endpoint["description"], created_at=endpoint["created_at"],
        # Shown this once; the vault keeps it only wrapped under the tenant's key.
        secret=made.secret.reveal(),
    )  # fmt: skip
    return render(
        shown,
        status=201,
        headers={"Cache-Control": "no-store", "Location": f"/v1/webhooks/{endpoint['id']}"},
    )


@operation(
    "listWebhooks", tag=Tag.WEBHOOKS, summary="List the tenant's webhook endpoints (no secrets)",
    scope=Scope.ADMIN, answers={200: ok(WebhookPage)},
)  # fmt: skip
async def list_webhooks(request: Request, caller: Principal, query: PageQuery) -> Response:
    endpoints = await vault_state(request).webhooks.list_endpoints(
        caller.tenant_id, page_after_time(decode_cursor_parts(query.cursor, 2)), query.limit
    )
    last = endpoints[-1] if len(endpoints) == query.limit else None
    cursor = encode_cursor_parts(rfc3339(last["created_at"]), str(last["id"])) if last else None
    return render(WebhookPage([Webhook.of(e) for e in endpoints], cursor))


@operation(
    "getWebhook", tag=Tag.WEBHOOKS, summary="One webhook endpoint (no secret)",
    scope=Scope.ADMIN, answers={200: ok(Webhook)}, errors=(404,),
)  # fmt: skip
async def show_webhook(request: Request, caller: Principal) -> Response:
    endpoint = await vault_state(request).webhooks.get(
        caller.tenant_id, path_uuid(request.path_params["webhook_id"])
    )
    return render(Webhook.of(endpoint))


@operation(
    "deleteWebhook", tag=Tag.WEBHOOKS,
    summary="Delete an endpoint: its secret is destroyed and deliveries still queued for it "
    "are cancelled",
    scope=Scope.ADMIN, answers={204: no_content("Deleted")}, errors=(404,),
)  # fmt: skip
async def delete_webhook(request: Request, caller: Principal) -> Response:
    vault = vault_state(request)
    await vault.webhooks.delete(
        caller.tenant_id, path_uuid(request.path_params["webhook_id"]), caller.key_id
    )
    # In the shred ledger before the answer: a restored backup keeps it deleted.
    await vault.ledger.make_durable(
        "webhook_ledger_entry_deferred", tenant_id=str(caller.tenant_id)
    )
    return Response(status_code=204)


@operation(
    "testWebhook", tag=Tag.WEBHOOKS,
    summary="Queue a webhook.test event for this endpoint; 202 with its delivery",
    scope=Scope.ADMIN, answers={202: _QUEUED}, errors=(404,),
)  # fmt: skip
async def test_webhook(request: Request, caller: Principal) -> Response:
    delivery = await vault_state(request).webhooks.send_test(
        caller.tenant_id, path_uuid(request.path_params["webhook_id"])
    )
    return render(Delivery.of(delivery), status=202)


@operation(
    "listWebhookDeliveries", tag=Tag.WEBHOOKS,
    summary="The endpoint's deliveries, newest first, each with its attempts (status, answer "
    "code, time); kept 30 days after they settle",
    scope=Scope.ADMIN, answers={200: ok(DeliveryPage)}, errors=(404,),
)  # fmt: skip
async def list_deliveries(
    request: Request, caller: Principal, query: DeliveryListQuery
) -> Response:
    deliveries = await vault_state(request).webhooks.deliveries(
        caller.tenant_id,
        path_uuid(request.path_params["webhook_id"]),
        status=query.status.value if query.status else None,
        after=page_after_time(decode_cursor_parts(query.cursor, 2)),
        limit=query.limit,
    )
    last = deliveries[-1] if len(deliveries) == query.limit else None
    cursor = encode_cursor_parts(rfc3339(last["created_at"]), str(last["id"])) if last else None
    return render(DeliveryPage([Delivery.of(d) for d in deliveries], cursor))


@operation(
    "retryWebhookDelivery", tag=Tag.WEBHOOKS,
    summary="Send a delivery again (same body and webhook-id): a delivered or failed one is "
    "queued with a fresh retry schedule, a pending one is tried at once",
    scope=Scope.ADMIN, answers={202: _QUEUED}, errors=(404,),
)  # fmt: skip
async def retry_delivery(request: Request, caller: Principal) -> Response:
    delivery = await vault_state(request).webhooks.retry(
        caller.tenant_id,
        path_uuid(request.path_params["webhook_id"]),
        path_uuid(request.path_params["delivery_id"]),
    )
    return render(Delivery.of(delivery), status=202)
