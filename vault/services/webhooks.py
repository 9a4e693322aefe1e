"""Webhook endpoints (admin scope): register, list, read, delete, send a test event, the
delivery log and its replay. Deliveries themselves are the job in workers/webhooks.py."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crypto.webhooks import display_webhook_secret
from vault.db.database import Database
from vault.db.sql import Queries
from vault.domain.secret_text import SecretText
from vault.domain.webhook_destinations import refused_addresses
from vault.domain.webhooks import (
    ATTEMPTS_SHOWN,
    MAX_WEBHOOKS_PER_TENANT,
    DeliveryStatus,
    EventType,
    WebhookUrl,
)
from vault.errors import Conflict, InvalidInput, NotFound
from vault.observability import events
from vault.services.keyring import KeyRing
from vault.services.ledger_standing import record_webhook_deleted
from vault.services.webhook_outbox import emit_test
from vault.services.webhook_secrets import seal_new_secret
from vault.services.webhook_sender import ResolutionFailed, Resolver

Q = Queries("webhooks")

# A registration waits this long for DNS at most: the request must not hang on a resolver.
REGISTRATION_DNS_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class WebhookRequest:
    url: WebhookUrl
    events: tuple[EventType, ...]
    description: str | None


@dataclass(frozen=True)
class CreatedWebhook:
    endpoint: dict[str, Any]
    secret: SecretText  # `whsec_…`, shown in the creating answer only


class WebhookService:
    def __init__(
        self, db: Database, keyring: KeyRing, resolver: Resolver, *, allow_private_networks: bool
    ) -> None:
        self._db = db
        self._keyring = keyring
        self._resolver = resolver
        self.allow_private_networks = allow_private_networks

    async def check_destination(self, url: WebhookUrl) -> None:
        """Refuse a URL whose host is, or resolves to, an address the deployment does not
        let webhooks reach. Deliveries check again: DNS may answer differently later."""
        if self.allow_private_networks:
            return
        try:
            async with asyncio.timeout(REGISTRATION_DNS_TIMEOUT_SECONDS):
                addresses = await self._resolver(url.host, url.port)
        except (ResolutionFailed, TimeoutError):
            raise InvalidInput("url: the host name does not resolve", field="url") from None
        if refused_addresses(addresses, allow_private=False):
            raise InvalidInput(
                "url points to a private, loopback, link-local or otherwise non-public "
                "address, which this deployment does not let webhooks reach",
                field="url",
            )

    async def create(
        self, tenant_id: uuid.UUID, request: WebhookRequest, api_key_id: uuid.UUID
    ) -> CreatedWebhook:
        await self.check_destination(request.url)
        endpoint_id = uuid.uuid4()
        async with self._db.tenant_tx(tenant_id) as conn:
            await conn.execute(Q.lock_tenant_endpoints, tenant_id)
            if int(await conn.fetchval(Q.count_live_endpoints, tenant_id)) >= (
                MAX_WEBHOOKS_PER_TENANT
            ):
                raise Conflict(
                    f"a tenant has at most {MAX_WEBHOOKS_PER_TENANT} webhooks; delete one first"
                )
            secret, wrapped, kek_version = await seal_new_secret(
                conn, self._keyring, tenant_id, endpoint_id
            )
            row = await conn.fetchrow(
                Q.insert_endpoint, tenant_id, endpoint_id, request.url.text,
                [e.value for e in request.events], request.description, wrapped, kek_version,
                api_key_id,
            )  # fmt: skip
        assert row is not None
        events.webhook_registered(tenant_id, endpoint_id, api_key_id)
        return CreatedWebhook(dict(row), SecretText(display_webhook_secret(secret)))

    async def list_endpoints(
        self, tenant_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[dict[str, Any]]:
        async with self._db.tenant_tx(tenant_id) as conn:
            rows = await conn.fetch(
                Q.list_live_endpoints, tenant_id, *(after or (None, None)), limit
            )
        return [dict(r) for r in rows]

    async def get(self, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> dict[str, Any]:
        async with self._db.tenant_tx(tenant_id) as conn:
            row = await conn.fetchrow(Q.get_live_endpoint, tenant_id, endpoint_id)
        if row is None:
            raise NotFound("no such webhook")
        return dict(row)

    async def delete(
        self, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, api_key_id: uuid.UUID
    ) -> None:
        """The secret is destroyed with it; deliveries still queued are cancelled."""
        async with self._db.tenant_tx(tenant_id) as conn:
            if await conn.fetchval(Q.delete_endpoint, tenant_id, endpoint_id) is None:
                raise NotFound("no such webhook")
            await conn.execute(Q.cancel_pending_of_endpoint, tenant_id, endpoint_id)
            # A restored backup must not bring it back (vault/services/ledger_standing.py).
            await record_webhook_deleted(conn, tenant_id, endpoint_id)
        events.webhook_deleted(tenant_id, endpoint_id, api_key_id)

    async def send_test(
        self, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, now: datetime | None = None
    ) -> dict[str, Any]:
        """Queue a `webhook.test` event for this endpoint; the delivery it became."""
        async with self._db.tenant_tx(tenant_id) as conn:
            delivery_id = await emit_test(conn, tenant_id, endpoint_id, now or datetime.now(UTC))
            if delivery_id is None:
                raise NotFound("no such webhook")
            return await self._delivery(conn, tenant_id, delivery_id)

    async def deliveries(
        self, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, *, status: str | None,
        after: tuple[datetime, uuid.UUID] | None, limit: int,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """The endpoint's deliveries, newest first, each with its newest attempts."""
        if status is not None and status not in set(DeliveryStatus):
            raise InvalidInput(f"status must be one of {', '.join(DeliveryStatus)}", field="status")
        async with self._db.tenant_tx(tenant_id) as conn:
            if await conn.fetchrow(Q.get_live_endpoint, tenant_id, endpoint_id) is None:
                raise NotFound("no such webhook")
            rows = await conn.fetch(
                Q.list_deliveries, tenant_id, endpoint_id, status, *(after or (None, None)),
                limit,
            )  # fmt: skip
            return await self._with_attempts(conn, tenant_id, [dict(r) for r in rows])

    async def retry(
        self, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, delivery_id: uuid.UUID,
        now: datetime | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Send a delivery again (the same message and webhook-id): a delivered or given-up
        one is queued with a fresh retry schedule; a pending one is tried at once instead
        of after its backoff."""
        async with self._db.tenant_tx(tenant_id) as conn:
            row = await conn.fetchrow(
                Q.get_delivery_for_update, tenant_id, endpoint_id, delivery_id
            )
            if row is None:
                raise NotFound("no such delivery")
            await conn.execute(Q.requeue_delivery, tenant_id, delivery_id, now or datetime.now(UTC))
            return await self._delivery(conn, tenant_id, delivery_id)

    async def _delivery(
        self, conn: Any, tenant_id: uuid.UUID, delivery_id: uuid.UUID
    ) -> dict[str, Any]:
        row = await conn.fetchrow(Q.delivery_summary, tenant_id, delivery_id)
        assert row is not None
        delivery: dict[str, Any] = (await self._with_attempts(conn, tenant_id, [dict(row)]))[0]
        return delivery

    @staticmethod
    async def _with_attempts(
        conn: Any, tenant_id: uuid.UUID, deliveries: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        by_id: dict[uuid.UUID, list[dict[str, Any]]] = {d["id"]: [] for d in deliveries}
        if by_id:
            for attempt in await conn.fetch(
                Q.recent_attempts, tenant_id, list(by_id), ATTEMPTS_SHOWN
            ):
                attempt = dict(attempt)
                by_id[attempt.pop("delivery_id")].append(attempt)
        for delivery in deliveries:
            delivery["attempts"] = by_id[delivery["id"]]
        return deliveries
