"""Where a webhook may post, checked again at delivery: a name that rebinds to a private
address after registration, and names that resolve to private addresses at registration.
Resolvers are injected: no test here looks up a real name or sends to a public address."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.integration.webhooks_support import (
    deliveries,
    no_queue_left_behind,
    vault,
)
from tests.jobs import run_webhook_pass
from tests.support import ServerThread, Tenant, make_tenant, private_server
from tests.webhook_receiver import receiving
from vault.observability.metrics import Metrics
from vault.services.webhook_sender import WebhookSender

__all__ = ["no_queue_left_behind", "vault"]  # fixtures


# --- destinations, checked again at delivery ---------------------------------------------


def test_a_name_that_rebinds_to_a_private_address_is_refused_at_delivery(
    pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Registered while hooks.example.com resolved to a public address; at delivery it
    resolves to 127.0.0.1, where a receiver listens: nothing reaches it."""
    from vault.runtime import operator_context
    from vault.services.webhooks import WebhookRequest, WebhookService

    async def public(host: str, port: int) -> list[Any]:
        import ipaddress

        return [ipaddress.ip_address("93.184.216.34")]

    async def rebound(host: str, port: int) -> list[Any]:
        import ipaddress

        return [ipaddress.ip_address("127.0.0.1")]

    with (
        private_server(pg_admin_url, tmp_path_factory.mktemp("rebind")) as strict,
        receiving() as receiver,
    ):
        tenant = make_tenant(strict.settings, strict.database_url)

        async def register() -> str:
            from vault.domain.webhooks import parse_events, parse_webhook_url

            url = parse_webhook_url(
                f"https://hooks.example.com:{receiver.port}/hook", allow_private_networks=False
            )
            async with operator_context(strict.settings, strict.database_url) as ctx:
                service = WebhookService(ctx.db, ctx.keyring, public, allow_private_networks=False)
                created = await service.create(
                    tenant.id, WebhookRequest(url, parse_events(["hold.expired"]), None),
                    uuid.uuid4(),
                )  # fmt: skip
            return str(created.endpoint["id"])

        webhook_id = asyncio.run(register())
        with strict.client() as http:
            http.post(f"/v1/webhooks/{webhook_id}/test", headers=tenant.auth())
            metrics = Metrics()
            sender = WebhookSender(allow_private_networks=False, resolver=rebound)
            assert run_webhook_pass(strict, sender=sender, metrics=metrics) == 0
            [delivery] = deliveries(http, tenant, webhook_id)
    assert receiver.all() == []
    assert delivery["attempts"][0]["outcome"] == "destination_refused"
    assert delivery["status"] == "pending"  # DNS may change back; the schedule goes on
    exposition = metrics.render().decode()
    assert 'datavault_webhook_attempts_total{outcome="destination_refused"} 1.0' in exposition


def test_a_name_resolving_to_a_private_address_is_refused_at_registration(
    pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from vault.domain.webhooks import parse_events, parse_webhook_url
    from vault.errors import InvalidInput
    from vault.runtime import operator_context
    from vault.services.webhook_sender import ResolutionFailed
    from vault.services.webhooks import WebhookRequest, WebhookService

    answers: dict[str, list[str]] = {
        "inside.example.com": ["10.0.0.7"],
        "mixed.example.com": ["93.184.216.34", "169.254.169.254"],
        "fine.example.com": ["93.184.216.34", "2606:4700::1111"],
    }

    async def resolver(host: str, port: int) -> list[Any]:
        import ipaddress

        if host not in answers:
            raise ResolutionFailed("nxdomain")
        return [ipaddress.ip_address(a) for a in answers[host]]

    async def attempt(server: ServerThread, tenant: Tenant, host: str) -> str | None:
        url = parse_webhook_url(f"https://{host}/hook", allow_private_networks=False)
        async with operator_context(server.settings, server.database_url) as ctx:
            service = WebhookService(ctx.db, ctx.keyring, resolver, allow_private_networks=False)
            try:
                await service.create(
                    tenant.id, WebhookRequest(url, parse_events(["hold.expired"]), None),
                    uuid.uuid4(),
                )  # fmt: skip
            except InvalidInput as refused:
                return refused.detail
        return None

    with private_server(pg_admin_url, tmp_path_factory.mktemp("resolve")) as strict:
        tenant = make_tenant(strict.settings, strict.database_url)
        outcomes = {host: asyncio.run(attempt(strict, tenant, host))
                    for host in (*answers, "nowhere.example.com")}  # fmt: skip
    assert outcomes["fine.example.com"] is None
    for host in ("inside.example.com", "mixed.example.com"):
        assert "private" in (outcomes[host] or ""), host
    assert "does not resolve" in (outcomes["nowhere.example.com"] or "")
