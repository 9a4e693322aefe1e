"""Red team 15: a request whose chunked body turns malformed mid-way, on a running vault.

Found: httptools reports the bad chunk; the edge limits (vault/http/edge_limits.py
`_answer_refusal`) then rewrite the RUNNING request's scope into the refusal's (path "/",
state edge_refusal) and queue the 400 behind that request, which waits for body bytes
the parser will never deliver. The client gets no answer; when it gives up and closes,
uvicorn marks only the queued refusal's cycle disconnected, so the request's task and
the connection stay in the server until it shuts down (and then hold the drain for its
whole grace period). One malformed chunk per connection pins a request for good.
Fixed: the running request is told its client is gone, the refusal answers in its place
with a scope of its own, and a lost connection marks every request of it gone.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator

import pytest

from tests.api.helpers import create_key, record_url, wait_for
from tests.e2e.test_redteam10_request_path import RawConnection
from tests.support import ServerThread, Tenant


@pytest.fixture
def leaked_tasks_cancelled(server: ServerThread) -> Iterator[None]:
    """Whatever request task this test leaves is cancelled afterwards, so the session's
    vault does not wait for it at shutdown."""
    state = server.server.server_state
    before = set(state.tasks)
    yield
    for task in set(state.tasks) - before:
        task.get_loop().call_soon_threadsafe(task.cancel)


def test_a_malformed_chunk_mid_body_is_answered_and_nothing_outlives_the_client(
    server: ServerThread, tenant: Tenant, leaked_tasks_cancelled: None
) -> None:
    with server.client() as http:
        writer = create_key(http, tenant, ["ingest"])
    state = server.server.server_state
    tasks_before = len(state.tasks)
    host = urllib.parse.urlsplit(server.base_url).netloc
    head = (
        f"PUT {record_url('rt15-chunks', 'value')}?category=account HTTP/1.1\r\n"
        f"Host: {host}\r\nAuthorization: Bearer {writer['secret']}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    with RawConnection(server) as conn:
        conn.sock.sendall(head + b"2\r\n{}\r\n")
        time.sleep(0.2)  # the handler is reading the body
        conn.sock.sendall(b"zz\r\nnot a chunk\r\n")
        answered = conn.rest(timeout=1.5)
    # The client has gone: nothing of its request may stay in the server.
    drained = wait_for(lambda: len(state.tasks) <= tasks_before, timeout=2.0)
    assert answered.startswith(b"HTTP/1.1 400 "), answered[:80]
    assert drained, f"{len(state.tasks) - tasks_before} request task(s) outlived the client"
