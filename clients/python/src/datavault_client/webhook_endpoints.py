"""Webhook endpoints (admin scope): register, list, remove, send a test event, read the
delivery log and send a failed delivery again. Verifying what arrives: `webhooks.py`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from datavault_client import _routes as R
from datavault_client._fields import Fields
from datavault_client._transport import JsonBody, Transport, json_of
from datavault_client.models import (
    CreatedWebhookEndpoint,
    Page,
    WebhookDelivery,
    WebhookEndpoint,
)


class Webhooks:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(
        self, *, url: str, events: Sequence[str], description: str | None = None,
        idempotency_key: str | None = None,
    ) -> CreatedWebhookEndpoint:  # fmt: skip
        """Register `url` (https) for `events` (e.g. `erasure.completed`); the answer holds
        the signing secret this once."""
        body: dict[str, Any] = {"url": url, "events": list(events)}
        if description is not None:
            body["description"] = description
        response = self._t.call(
            R.CREATE_WEBHOOK, body=JsonBody(body), idempotency_key=idempotency_key
        )
        fields = Fields(json_of(response, R.CREATE_WEBHOOK), "webhook")
        return CreatedWebhookEndpoint.parse(fields)

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> Page[WebhookEndpoint]:
        response = self._t.call(R.LIST_WEBHOOKS, params={"limit": limit, "cursor": cursor})
        return Page.parse(json_of(response, R.LIST_WEBHOOKS), "webhooks", WebhookEndpoint.parse)

    def iterate(self) -> Iterator[WebhookEndpoint]:
        cursor = None
        while True:
            page = self.list(cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def get(self, webhook_id: str) -> WebhookEndpoint:
        response = self._t.call(R.GET_WEBHOOK, {"webhook_id": webhook_id})
        return WebhookEndpoint.parse(Fields(json_of(response, R.GET_WEBHOOK), "webhook"))

    def delete(self, webhook_id: str) -> None:
        """Removed at once, its secret destroyed; pending deliveries are not sent."""
        self._t.call(R.DELETE_WEBHOOK, {"webhook_id": webhook_id})

    def test(self, webhook_id: str) -> WebhookDelivery:
        """Queue a `webhook.test` event for this endpoint (sent once: each call queues one)."""
        response = self._t.call(R.TEST_WEBHOOK, {"webhook_id": webhook_id})
        return WebhookDelivery.parse(Fields(json_of(response, R.TEST_WEBHOOK), "delivery"))

    def deliveries(
        self, webhook_id: str, *, status: str | None = None, limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[WebhookDelivery]:  # fmt: skip
        """The delivery log, newest first; `status`: `pending`, `delivered` or `failed`."""
        response = self._t.call(
            R.LIST_WEBHOOK_DELIVERIES, {"webhook_id": webhook_id},
            params={"status": status, "limit": limit, "cursor": cursor},
        )  # fmt: skip
        return Page.parse(
            json_of(response, R.LIST_WEBHOOK_DELIVERIES), "deliveries", WebhookDelivery.parse
        )

    def retry_delivery(self, webhook_id: str, delivery_id: str) -> WebhookDelivery:
        """Send a delivery again (a failed one, or a delivered one to replay it)."""
        response = self._t.call(
            R.RETRY_WEBHOOK_DELIVERY, {"webhook_id": webhook_id, "delivery_id": delivery_id}
        )
        return WebhookDelivery.parse(
            Fields(json_of(response, R.RETRY_WEBHOOK_DELIVERY), "delivery")
        )
