"""Webhook endpoints through the client against a live vault, and what the vault then
delivers, received on 127.0.0.1 and verified with the client's `WebhookVerifier`: a test
event, its replay under the same webhook-id, the secret shown once, removal."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from datavault_client import Client, NotFound, WebhookVerificationError, WebhookVerifier
from tests.client.support import FAST_RETRY
from tests.jobs import run_webhook_pass
from tests.support import ServerThread, make_tenant, private_server
from tests.webhook_receiver import receiving


@pytest.fixture(scope="module")
def vault(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """Receivers on 127.0.0.1 allowed; jobs off: the test runs the delivery pass itself."""
    with private_server(
        pg_admin_url, tmp_path_factory.mktemp("client-webhooks"),
        webhook_allow_private_networks=True,
    ) as server:  # fmt: skip
        yield server


def test_an_endpoint_gets_a_verifiable_test_event_and_a_replay(vault: ServerThread) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with (
        Client(vault.base_url, tenant.admin_key, retry=FAST_RETRY) as admin,
        receiving() as receiver,
    ):
        created = admin.webhooks.create(
            url=receiver.url("/hook"), events=["erasure.completed"], description="billing"
        )
        secret = created.secret.reveal()
        assert secret.startswith("whsec_") and secret not in repr(created)
        endpoint = created.endpoint
        assert (endpoint.events, endpoint.description) == (["erasure.completed"], "billing")
        assert admin.webhooks.get(endpoint.id) == endpoint
        assert [e.id for e in admin.webhooks.iterate()] == [endpoint.id]

        queued = admin.webhooks.test(endpoint.id)
        assert queued.status == "pending" and queued.type == "webhook.test"
        assert run_webhook_pass(vault) == 1
        [first] = receiver.at("/hook")
        event = WebhookVerifier(created.secret).verify(first.body, first.headers)
        assert (event.id, event.type) == (queued.event_id, "webhook.test")
        other = admin.webhooks.create(url=receiver.url("/other"), events=["hold.released"])
        with pytest.raises(WebhookVerificationError):  # another endpoint's secret
            WebhookVerifier(other.secret).verify(first.body, first.headers)

        [delivered] = admin.webhooks.deliveries(endpoint.id, status="delivered").items
        assert delivered.id == queued.id and delivered.attempt_count == 1
        assert delivered.attempts[0].response_code == 200
        again = admin.webhooks.retry_delivery(endpoint.id, delivered.id)
        assert again.status == "pending"
        assert run_webhook_pass(vault) == 1
        replayed = receiver.at("/hook")[1]
        assert WebhookVerifier(secret).verify(replayed.body, replayed.headers).id == event.id

        admin.webhooks.delete(endpoint.id)
        with pytest.raises(NotFound):
            admin.webhooks.get(endpoint.id)
        with pytest.raises(NotFound):
            admin.webhooks.deliveries(str(uuid.uuid4()))
