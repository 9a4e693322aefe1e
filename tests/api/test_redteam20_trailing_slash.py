"""Red team 20: a trailing slash after a subject path is redirected to another subject.

SubjectPathMiddleware (vault/http/subject_path.py) routes `/v1/subjects/{ref}/…` on a
placeholder segment, `_`, and Starlette's slash redirect builds its Location from that
rewritten path: `GET /v1/subjects/alice/records/` answers 307 to
`/v1/subjects/_/records`. The reference does not leak (held), but a client that follows
the redirect (httpx, requests, browsers all do for 307, keeping Authorization on the same
origin) reads the subject whose reference is `_`: another person's data, logged under
that person. A 307 keeps the method and body, so an erasure request (or a DELETE) sent
with a trailing slash is carried out on the subject `_` and answered 202, while the
subject the client named is never erased (Python's requests follows it by default).
Findings, strict xfails.
"""

from __future__ import annotations

import uuid

from tests.api.helpers import auth, create_key, data_keys, put_record, subject_url
from tests.support import ServerThread, Tenant


def test_a_trailing_slash_never_answers_with_another_subjects_data(
    server: ServerThread, tenant: Tenant
) -> None:
    ref = f"rt20-slash-{uuid.uuid4().hex[:8]}"
    with server.client() as http:
        keys = data_keys(http, tenant)
        assert put_record(http, keys.ingest, ref, "mine", b'{"v": 1}').status_code == 201
        # Another person whose reference happens to be the placeholder.
        assert put_record(http, keys.ingest, "_", "theirs", b'{"v": 2}').status_code == 201
        first = http.get(subject_url(ref, "records") + "/", headers=auth(keys.read))
        location = first.headers.get("location", "")
        followed = http.get(
            subject_url(ref, "records") + "/", headers=auth(keys.read), follow_redirects=True
        )
    assert "/v1/subjects/_/" not in location
    assert "theirs" not in followed.text


def test_the_slash_redirect_does_not_carry_the_reference(
    server: ServerThread, tenant: Tenant
) -> None:
    """Held: neither the Location nor the body repeats the reference."""
    ref = f"rt20-slash-{uuid.uuid4().hex[:8]}"
    with server.client() as http:
        keys = data_keys(http, tenant)
        response = http.get(subject_url(ref, "records") + "/", headers=auth(keys.read))
    assert ref not in response.headers.get("location", "")
    assert ref not in response.text


def test_an_erasure_sent_with_a_trailing_slash_never_erases_another_subject(
    server: ServerThread, tenant: Tenant
) -> None:
    """A 307 keeps the method and the body: a client that follows it (as HTTP clients do)
    has its erasure instruction carried out on the subject `_`, and gets a 202 that looks
    like its own subject's erasure, which never starts."""
    ref = f"rt20-slash-{uuid.uuid4().hex[:8]}"
    with server.client() as http:
        keys = data_keys(http, tenant)
        eraser = create_key(http, tenant, ["erasure"])
        assert put_record(http, keys.ingest, ref, "mine", b'{"v": 1}').status_code == 201
        answer = http.post(
            subject_url(ref, "erasure") + "/", json={}, headers=auth(eraser),
            follow_redirects=True,
        )  # fmt: skip
        mine = http.post(subject_url(ref, "erasure"), json={}, headers=auth(eraser))
    # Either refused, or the very erasure a request without the slash gets (200: the
    # same scheduled one), never a 202 for some other subject.
    assert answer.status_code >= 400 or answer.json()["id"] == mine.json()["id"]


def test_a_subject_path_with_a_trailing_slash_is_not_found_not_redirected(
    server: ServerThread, tenant: Tenant
) -> None:
    """Every subject route, and the subject itself, spelled with a trailing slash: 404
    problem+json, no Location. The 404 is sound only while no subject route's own path
    ends in "/" (the router answers it without Starlette's scan), which is checked too."""
    subject_routes = [
        r.path for r in server.app.routes if getattr(r, "path", "").startswith("/v1/subjects/")
    ]  # fmt: skip
    assert subject_routes and not [p for p in subject_routes if p.endswith("/")]
    ref = f"rt20-slash-{uuid.uuid4().hex[:8]}"
    with server.client() as http:
        keys = data_keys(http, tenant)
        assert put_record(http, keys.ingest, ref, "mine", b'{"v": 1}').status_code == 201
        for parts in ((), ("records",), ("artefacts",), ("records", "mine")):
            answer = http.get(subject_url(ref, *parts) + "/", headers=auth(keys.read))
            assert answer.status_code == 404, (parts, answer.status_code)
            assert "location" not in answer.headers
            assert answer.headers["content-type"].startswith("application/problem+json")
        # Without the slash the same paths are served as before.
        assert http.get(subject_url(ref, "records"), headers=auth(keys.read)).status_code == 200
