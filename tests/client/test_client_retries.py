"""Retries against a live vault behind a proxy that loses answers: a create whose answer
was lost is sent again under the same Idempotency-Key and makes one object; 503 and 429
are waited out for safe requests only; a change (cancel, release) is never sent twice;
a delete whose answer was lost is done, not missing."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from datavault_client import (
    Client,
    ConnectionFailed,
    InvalidInput,
    NotFound,
    RetryPolicy,
    Throttled,
    Unavailable,
)
from tests.client.support import (
    FAST_RETRY,
    FaultyProxy,
    Keys,
    requests_seen,
    tenant_clients,
    unique,
    upstream_of,
)
from tests.support import ServerThread, Tenant


@pytest.fixture
def keys(server: ServerThread, tenant: Tenant) -> Iterator[Keys]:
    with tenant_clients(server, tenant) as made:
        yield made


@pytest.fixture
def proxy(server: ServerThread) -> Iterator[FaultyProxy]:
    running = FaultyProxy(upstream_of(server))
    try:
        yield running
    finally:
        running.close()


def _through(proxy: FaultyProxy, secret: str, retry: RetryPolicy = FAST_RETRY) -> Client:
    return Client(proxy.url, secret, retry=retry)


def test_a_create_whose_answer_was_lost_makes_one_hold(keys: Keys, proxy: FaultyProxy) -> None:
    reference = unique("CASE")
    proxy.faults = ["lose_answer"]
    with _through(proxy, keys.secrets["officer"]) as officer:
        hold = officer.holds.place(reason="billing", reference=reference, subject_ref="someone")
    assert requests_seen(proxy, "POST", "/v1/holds") == 2  # the vault saw it twice
    assert hold.reference == reference
    placed = [h for h in keys.officer.holds.iterate() if h.reference == reference]
    assert [h.id for h in placed] == [hold.id]


def test_an_upload_whose_answer_was_lost_makes_one_artefact(
    keys: Keys, proxy: FaultyProxy, tmp_path: Path
) -> None:
    source = tmp_path / "call.bin"
    source.write_bytes(uuid.uuid4().bytes * 40_000)
    ref = unique("retried")
    proxy.faults = ["lose_answer"]
    with _through(proxy, keys.secrets["app"]) as app:
        artefact = app.artefacts.upload(ref, source, category="recording")
    assert requests_seen(proxy, "POST", "/artefacts") == 2
    assert [a.id for a in keys.app.artefacts.iterate(ref)] == [artefact.id]
    assert keys.app.artefacts.download(ref, artefact.id).read() == source.read_bytes()


def test_the_same_key_given_twice_is_one_erasure_and_another_request_is_refused(
    keys: Keys,
) -> None:
    """A caller that restarts keeps its own Idempotency-Key for the same instruction."""
    ref = unique("erase-once")
    key = f"erase-{ref}"
    first = keys.privacy.erasures.request(ref, reference="T-1", idempotency_key=key)
    again = keys.privacy.erasures.request(ref, reference="T-1", idempotency_key=key)
    assert again == first and first.created
    with pytest.raises(InvalidInput) as refused:
        keys.privacy.erasures.request(ref, reference="T-2", idempotency_key=key)
    assert refused.value.errors[0].field == "Idempotency-Key"


def test_every_create_call_gets_its_own_key(keys: Keys) -> None:
    ref = unique("two-calls")
    first = keys.app.records.put(ref, "note", {"n": 1}, category="support")
    second = keys.app.records.put(ref, "note", {"n": 1})
    assert (first.version, second.version) == (1, 2)  # two calls: two versions


def test_a_read_waits_out_503_and_429(keys: Keys, proxy: FaultyProxy) -> None:
    ref = unique("busy")
    keys.app.records.put(ref, "profile", {"ok": True}, category="account")
    proxy.faults = ["unavailable", "throttled"]
    with _through(proxy, keys.secrets["app"]) as app:
        assert app.records.get(ref, "profile") == {"ok": True}
    assert proxy.connections == 3


def test_tries_are_counted_and_the_last_answer_raised(keys: Keys, proxy: FaultyProxy) -> None:
    proxy.faults = ["unavailable"] * 4
    with _through(proxy, keys.secrets["app"]) as app, pytest.raises(Unavailable) as raised:
        app.subjects.get("anyone")
    assert proxy.connections == FAST_RETRY.attempts
    assert raised.value.status == 503 and raised.value.detail == "injected"


def test_a_long_retry_after_is_raised_at_once(keys: Keys, proxy: FaultyProxy) -> None:
    proxy.faults, proxy.retry_after = ["throttled"], 60
    with _through(proxy, keys.secrets["app"]) as app, pytest.raises(Throttled) as raised:
        app.subjects.get("anyone")
    assert raised.value.retry_after == 60 and proxy.connections == 1


def test_a_change_is_never_sent_twice(keys: Keys, proxy: FaultyProxy) -> None:
    """Cancelling an erasure whose answer was lost is not repeated (a repeat would answer
    409 for what succeeded): the caller hears that the answer is unknown. (The tenant is
    this test's own: its grace period needs no resetting.)"""
    tenant_settings = keys.admin.tenant.update_settings(erasure_grace_hours=1)
    assert tenant_settings.erasure_grace_hours == 1
    erasure = keys.privacy.erasures.request(unique("grace"))
    proxy.faults = ["lose_answer"]
    with _through(proxy, keys.secrets["privacy"]) as privacy, pytest.raises(ConnectionFailed):
        privacy.erasures.cancel(erasure.id)
    assert requests_seen(proxy, "POST", "/cancel") == 1
    assert keys.privacy.erasures.get(erasure.id).status == "cancelled"
    # Nor after a 503: the vault may have done it before failing.
    other = keys.privacy.erasures.request(unique("grace"))
    proxy.faults = ["unavailable"]
    with _through(proxy, keys.secrets["privacy"]) as privacy, pytest.raises(Unavailable):
        privacy.erasures.cancel(other.id)
    assert proxy.connections == 2  # one try each
    assert keys.privacy.erasures.get(other.id).status != "cancelled"


def test_a_delete_whose_answer_was_lost_is_done(keys: Keys, proxy: FaultyProxy) -> None:
    ref = unique("delete")
    artefact = keys.app.artefacts.upload(ref, b"x" * 1000, category="recording")
    proxy.faults = ["lose_answer"]
    with _through(proxy, keys.secrets["app"]) as app:
        app.artefacts.delete(ref, artefact.id)  # the second try finds it gone: done
    assert requests_seen(proxy, "DELETE", "/artefacts/") == 2
    # Without an earlier try that may have reached the vault, missing is missing.
    with _through(proxy, keys.secrets["app"]) as app, pytest.raises(NotFound):
        app.artefacts.delete(ref, str(uuid.uuid4()))


def test_a_vault_that_does_not_listen_is_tried_then_reported() -> None:
    waits: list[float] = []
    # A port held but not listening: every connection is refused, and no one else can
    # start listening there while the test runs.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{held.getsockname()[1]}"
        with Client(url, "dv_x", retry=RetryPolicy(attempts=3)) as client:
            client._transport.sleep = waits.append  # count the waits instead of sleeping
            with pytest.raises(ConnectionFailed) as raised:
                client.erasures.cancel(str(uuid.uuid4()))  # nothing was sent: safe to retry
    assert len(waits) == 2 and all(0 <= w <= RetryPolicy().max_delay for w in waits)
    assert "POST /v1/erasures/{erasure_id}/cancel" in str(raised.value)
    assert "dv_x" not in str(raised.value)
