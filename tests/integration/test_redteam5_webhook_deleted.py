"""Red team 5: a webhook endpoint deleted while a delivery pass runs still gets its event.

`DELETE /v1/webhooks/{id}` answers 204 "its secret is destroyed and deliveries still queued
for it are cancelled" (vault/http/webhooks.py). A pass claims a round of deliveries (up to
32) and opens their secrets in one transaction, then posts them 16 at a time, each with a
10 s timeout (workers/webhooks.py): a delivery claimed just before the deletion is posted
after it, signed with the destroyed secret, up to 20 s later, with no check in between.
An admin who deletes an endpoint because its URL or its receiver is no longer theirs
expects nothing more to reach it.
"""

from __future__ import annotations

import threading
import time

from tests.integration.webhooks_support import no_queue_left_behind, register, vault
from tests.jobs import run_webhook_pass
from tests.support import ServerThread, make_tenant
from tests.webhook_receiver import receiving, silent_listener

__all__ = ["no_queue_left_behind", "vault"]  # fixtures

# workers/webhooks.py PARALLEL_ATTEMPTS: this many slow attempts fill every slot.
SLOTS = 16


def test_a_deleted_webhook_endpoint_receives_nothing_after_its_deletion(
    vault: ServerThread,
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with silent_listener() as slow_port, receiving() as receiver, vault.client() as http:
        # Another endpoint of the tenant whose receiver never answers: its attempts hold
        # the worker's slots for their 10 s timeout.
        slow_id, _ = register(http, tenant, f"http://127.0.0.1:{slow_port}/slow")
        for _ in range(SLOTS):
            queued = http.post(f"/v1/webhooks/{slow_id}/test", headers=tenant.auth())
            assert queued.status_code == 202, queued.text
        deleted_id, _ = register(http, tenant, receiver.url())
        queued = http.post(f"/v1/webhooks/{deleted_id}/test", headers=tenant.auth())
        assert queued.status_code == 202, queued.text

        delivering = threading.Thread(target=run_webhook_pass, args=(vault,))
        delivering.start()
        time.sleep(2)  # the pass has claimed the round and is waiting on the slow receiver
        gone = http.delete(f"/v1/webhooks/{deleted_id}", headers=tenant.auth())
        deleted_at = time.monotonic()
        assert gone.status_code == 204
        assert http.get(f"/v1/webhooks/{deleted_id}", headers=tenant.auth()).status_code == 404
        delivering.join(timeout=60)
        assert not delivering.is_alive()
    arrived = receiver.all()
    assert arrived == [], (
        f"{len(arrived)} event(s) reached the deleted endpoint "
        f"{time.monotonic() - deleted_at:.0f} s or less after its deletion"
    )
