"""Red team 15 on a running vault: the indexed router (vault/http/dispatch.py) over HTTP.

- Held: a record of tenant A asked for along edge paths (empty segments, a trailing
  slash, encoded "/", newline and carriage return, dot segments, HEAD) with tenant B's key
  or a wrong key never answers A's value, never a 500, always problem+json; A's own key
  gets the value only on the record's own path, pipelined on one keep-alive connection.
- Found: each request whose path has a "/" count not asked for before adds an entry to
  the router's candidate cache, never evicted (fixed: the test below passes).
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Callable

from tests.api.helpers import create_key, put_record, record_url
from tests.e2e.test_redteam10_request_path import RawConnection
from tests.support import ServerThread, Tenant
from vault.http.dispatch import IndexedRouter

VALUE = {"secret-ish": "tenant A's value", "n": 15}


def _router(server: ServerThread) -> IndexedRouter:
    router = server.app.router
    assert isinstance(router, IndexedRouter)
    return router


def _edge_paths(ref: str, name: str) -> list[str]:
    own = record_url(ref, name)
    quoted = urllib.parse.quote(ref, safe="")
    return [
        own,
        "/" + own,
        own + "/",
        own.replace("/v1/", "/v1//"),
        own.replace("/records/", "/records//"),
        own + "%0A",
        own + "%0D",
        own + "%2F",
        f"/v1/subjects%2F{quoted}/records/{name}",
        f"/v1/subjects/{quoted}%2Frecords%2F{name}",
        f"/v1/subjects/x/../{quoted}/records/{name}",
        f"/v1/subjects/{quoted}/records/./{name}",
        f"/v1/subjects/{quoted}/records/{name}/versions/",
        own.upper(),
        "/v1/subjects/%EF%BD%961/records/" + name,
    ]


def test_edge_paths_never_answer_another_tenants_record(
    server: ServerThread, new_tenant: Callable[[], Tenant]
) -> None:
    owner, other = new_tenant(), new_tenant()
    ref, name = f"rt15-{uuid.uuid4().hex[:8]}", "kept"
    with server.client() as http:
        writer = create_key(http, owner, ["ingest"])
        reader = create_key(http, owner, ["read"])
        stranger = create_key(http, other, ["read"])
        created = put_record(http, writer, ref, name, json.dumps(VALUE).encode())
        assert created.status_code == 201, created.text
    paths = _edge_paths(ref, name)
    keys = {"owner": reader["secret"], "other": stranger["secret"], "wrong": "dv_" + "x" * 40}
    asked = [(who, method, path) for path in paths for who in keys for method in ("GET", "HEAD")]
    with RawConnection(server) as conn:
        conn.sock.sendall(
            b"".join(conn.request(method, path, keys[who]) for who, method, path in asked)
        )
        answers = [conn.answer(method) for _, method, _ in asked]
        assert conn.rest(timeout=0.5) == b""
    value = json.dumps(VALUE).encode()
    for (who, method, path), answer in zip(asked, answers, strict=True):
        where = (who, method, path, answer.status)
        assert answer.status < 500, where
        if who == "owner" and path == paths[0]:
            assert answer.status == 200, where
            assert method == "HEAD" or json.loads(answer.body) == VALUE, where
            continue
        assert value not in answer.body, where
        if who != "owner":
            assert answer.status >= 300, where
        if answer.status >= 400 and method == "GET":
            assert answer.headers["content-type"].startswith("application/problem+json"), where


def test_requests_of_new_path_shapes_do_not_grow_the_router_cache(server: ServerThread) -> None:
    router = _router(server)
    with server.client() as http:
        http.get("/healthz")
        before = len(router._candidates)
        # Decoded by uvicorn into "/": the same "/" counts, 3 bytes each on the wire.
        asked = [f"/no-such-page{'%2F' * n}x" for n in range(1, 301)]
        with RawConnection(server) as conn:
            answers = []
            for path in asked:  # one at a time: keep-alive, not pipelined
                conn.sock.sendall(conn.request("GET", path, "dv_none"))
                answers.append(conn.answer("GET"))
    assert {answer.status for answer in answers} <= {401, 404}, {a.status for a in answers}
    grown = len(router._candidates) - before
    # The table's own shapes bound it (a few dozen): not one more per request.
    assert grown < 50, grown
