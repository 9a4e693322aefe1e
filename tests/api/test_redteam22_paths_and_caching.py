"""Red team 22: the trailing-slash 404 (1d695fa, `never_redirected`) and the default
`Cache-Control: private, no-store` of JSON answers (d2308f1), attacked with other
spellings and other kinds of answer.

What held: no spelling of a subject path sent verbatim (a trailing slash after any part,
`//`, `/./`, an encoded slash at the end, `;params`, HEAD, OPTIONS, a POST of an erasure)
is redirected, none answers another subject's data, and none is logged as an access to
a subject of the tenant (an unmatched route's row goes to the deployment chain); the
JSON answers sampled (tenant, API keys, access log, subject, records, versions,
erasures, holds, webhooks) say no-store. No answer honours If-None-Match, so no 304
without the header arises.

Finding (low): a problem+json answer that quotes the caller's data says nothing about
caching: a record's 409 names the record and its category.
"""

from __future__ import annotations

import http.client
import urllib.parse
import uuid

from tests.api.helpers import access_log, auth, create_key, data_keys, put_record, ref_path
from tests.support import ServerThread, Tenant


def _raw(
    server: ServerThread, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    """The request with its path exactly as written (httpx would normalise `/./`)."""
    parsed = urllib.parse.urlsplit(server.base_url)
    conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=10)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_held_no_spelling_of_a_subject_path_is_redirected(
    server: ServerThread, tenant: Tenant
) -> None:
    ref = f"rt22-slash-{uuid.uuid4().hex[:8]}"
    with server.client() as http:
        keys = data_keys(http, tenant)
        eraser = create_key(http, tenant, ["erasure"])
        assert put_record(http, keys.ingest, ref, "mine", b'{"v": 1}').status_code == 201
        assert put_record(http, keys.ingest, "_", "theirs", b'{"v": 2}').status_code == 201
    base = f"/v1/subjects/{ref_path(ref)}"
    spellings = [
        f"{base}/",
        f"{base}//",
        f"{base}/./",
        f"{base}/records/",
        f"{base}/records//",
        f"{base}/records/./",
        f"{base}/records%2F",
        f"{base}/records%2f",
        f"{base}/records;x=1/",
        f"{base}/records/;/",
        f"{base}/records/mine/",
        f"{base}/records/mine/versions/",
        f"{base}/records/?limit=1",
        f"{base}/export/",
        f"/v1/subjects/{ref_path(ref)}%2F/records/",
    ]
    for method in ("GET", "HEAD", "OPTIONS", "DELETE"):
        for path in spellings:
            status, headers, body = _raw(server, method, path, auth(keys.read))
            assert not 300 <= status < 400, (method, path, status, headers.get("location"))
            assert "location" not in headers, (method, path)
            assert b"theirs" not in body, (method, path)
    status, headers, body = _raw(
        server, "POST", f"{base}/erasure/", {**auth(eraser), "Content-Type": "application/json"},
        b"{}",
    )  # fmt: skip
    assert status == 404 and "location" not in headers, (status, body)
    # None is an access to a subject of the tenant: an unmatched route authenticates no
    # key, so its row is the deployment chain's `(unmatched)` one (DESIGN.md: rows with
    # no tenant); the tenant's log holds only the setup's writes.
    with server.client() as http:
        rows = access_log(http, keys.compliance, limit=500)
    assert {(r["method"], int(r["status"])) for r in rows} <= {("POST", 201), ("PUT", 201)}


def test_held_json_answers_say_no_store(server: ServerThread, tenant: Tenant) -> None:
    ref = f"rt22-cache-{uuid.uuid4().hex[:8]}"
    with server.client() as http:
        keys = data_keys(http, tenant)
        assert put_record(http, keys.ingest, ref, "mine", b'{"v": 1}').status_code == 201
        compliance = create_key(http, tenant, ["compliance"], owner="rt22 counsel")
        placed = http.post(
            "/v1/holds",
            json={"subject_ref": ref, "reason": "litigation", "reference": "rt22"},
            headers=auth(compliance),
        )
        assert placed.status_code == 201, placed.text
        answers = {
            "tenant": http.get("/v1/tenant", headers=tenant.auth()),
            "api keys": http.get("/v1/api-keys", headers=tenant.auth()),
            "access log": http.get("/v1/access-log", headers=auth(keys.compliance)),
            "subject": http.get(f"/v1/subjects/{ref_path(ref)}", headers=auth(keys.read)),
            "records": http.get(f"/v1/subjects/{ref_path(ref)}/records", headers=auth(keys.read)),
            "versions": http.get(
                f"/v1/subjects/{ref_path(ref)}/records/mine/versions",
                headers=auth(keys.compliance),
            ),
            "erasures": http.get("/v1/erasures", headers=auth(keys.compliance)),
            "holds": http.get("/v1/holds", headers=auth(compliance)),
            "hold": http.get(f"/v1/holds/{placed.json()['id']}", headers=auth(compliance)),
            "webhooks": http.get("/v1/webhooks", headers=tenant.auth()),
        }
    for name, answer in answers.items():
        assert answer.status_code == 200, (name, answer.text)
        assert "no-store" in answer.headers.get("cache-control", ""), name


def test_a_problem_quoting_a_record_name_says_no_store(
    server: ServerThread, tenant: Tenant
) -> None:
    ref = f"rt22-cache-{uuid.uuid4().hex[:8]}"
    with server.client() as http:
        keys = data_keys(http, tenant)
        name = "diagnosis-hiv"
        assert put_record(http, keys.ingest, ref, name, b'{"v": 1}').status_code == 201
        conflict = put_record(http, keys.ingest, ref, name, b'{"v": 2}', category="recording")
    assert conflict.status_code == 409, conflict.text
    assert name in conflict.text
    assert "no-store" in conflict.headers.get("cache-control", "")
