"""Another tenant's subjects, artefacts and records answer 404 on every route, whatever
scopes the caller holds, and are left untouched (API.md "Conventions"; DESIGN.md "Tenant
isolation")."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.api.helpers import (
    artefact_url,
    auth,
    create_key,
    data_keys,
    put_record,
    record_url,
    subject_url,
    uploaded,
)
from tests.support import ServerThread, Tenant, problem

ALL_SCOPES = ["ingest", "read", "erasure", "compliance", "admin"]

Attempt = Callable[[httpx.Client, dict[str, str], str, str], httpx.Response]


def _json(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Content-Type": "application/json"}


ATTEMPTS: dict[str, Attempt] = {
    "GET subject": lambda h, a, ref, aid: h.get(subject_url(ref), headers=a),
    "GET export": lambda h, a, ref, aid: h.get(subject_url(ref, "export"), headers=a),
    "GET artefacts": lambda h, a, ref, aid: h.get(subject_url(ref, "artefacts"), headers=a),
    "GET artefacts?category": lambda h, a, ref, aid: h.get(
        subject_url(ref, "artefacts"), params={"category": "recording"}, headers=a
    ),
    "GET artefact": lambda h, a, ref, aid: h.get(artefact_url(ref, aid), headers=a),
    "GET content": lambda h, a, ref, aid: h.get(artefact_url(ref, aid, "content"), headers=a),
    "GET content range": lambda h, a, ref, aid: h.get(
        artefact_url(ref, aid, "content"), headers={**a, "Range": "bytes=0-3"}
    ),
    "HEAD content": lambda h, a, ref, aid: h.head(artefact_url(ref, aid, "content"), headers=a),
    "DELETE artefact": lambda h, a, ref, aid: h.delete(artefact_url(ref, aid), headers=a),
    "POST playback link": lambda h, a, ref, aid: h.post(artefact_url(ref, aid, "links"), headers=a),
    "GET records": lambda h, a, ref, aid: h.get(subject_url(ref, "records"), headers=a),
    "GET record": lambda h, a, ref, aid: h.get(record_url(ref, "profile"), headers=a),
    "DELETE record": lambda h, a, ref, aid: h.delete(record_url(ref, "profile"), headers=a),
    "POST restriction": lambda h, a, ref, aid: h.post(
        subject_url(ref, "restriction"), json={"reason": "probe"}, headers=a
    ),
    "DELETE restriction": lambda h, a, ref, aid: h.delete(
        subject_url(ref, "restriction"), headers=a
    ),
    # Every GET route answers HEAD too (vault/http/routing.py): the same 404, no body.
    "HEAD subject": lambda h, a, ref, aid: h.head(subject_url(ref), headers=a),
    "HEAD export": lambda h, a, ref, aid: h.head(subject_url(ref, "export"), headers=a),
    "HEAD artefacts": lambda h, a, ref, aid: h.head(subject_url(ref, "artefacts"), headers=a),
    "HEAD artefact": lambda h, a, ref, aid: h.head(artefact_url(ref, aid), headers=a),
    "HEAD records": lambda h, a, ref, aid: h.head(subject_url(ref, "records"), headers=a),
    "HEAD record": lambda h, a, ref, aid: h.head(record_url(ref, "profile"), headers=a),
}


class Victim:
    def __init__(self, http: httpx.Client, tenant: Tenant) -> None:
        self.keys = data_keys(http, tenant)
        self.ref = f"victim-{uuid.uuid4().hex[:10]}"
        self.data = b"tenant A's recording " + uuid.uuid4().bytes
        self.record = b'{"email": "a-subject@example.org"}'
        self.artefact = uploaded(http, self.keys.ingest, self.ref, self.data)
        created = put_record(http, self.keys.ingest, self.ref, "profile", self.record)
        assert created.status_code == 201, created.text
        self.summary = self.snapshot(http)

    def snapshot(self, http: httpx.Client) -> dict[str, Any]:
        read = auth(self.keys.compliance)
        summary = http.get(subject_url(self.ref), headers=read)
        content = http.get(artefact_url(self.ref, self.artefact["id"], "content"), headers=read)
        record = http.get(record_url(self.ref, "profile"), headers=read)
        records = http.get(subject_url(self.ref, "records"), headers=read)
        assert summary.status_code == 200, summary.text
        assert content.content == self.data
        assert record.content == self.record
        return {
            "summary": summary.json(),
            "artefacts": http.get(subject_url(self.ref, "artefacts"), headers=read).json(),
            "records": records.json(),
        }


def _assert_not_found(response: httpx.Response, victim: Victim) -> None:
    assert response.status_code == 404, (response.request.method, response.status_code)
    if response.request.method == "HEAD":
        assert response.content == b"", response.content[:200]
    else:
        problem(response)
    assert victim.data not in response.content
    assert b"a-subject@example.org" not in response.content
    assert victim.ref not in response.text


@pytest.mark.parametrize("attempt", list(ATTEMPTS), ids=str)
def test_other_tenant_with_every_scope_gets_404_and_changes_nothing(
    server: ServerThread, new_tenant: Callable[[], Tenant], attempt: str
) -> None:
    a, b = new_tenant(), new_tenant()
    with server.client() as http:
        victim = Victim(http, a)
        intruder = auth(create_key(http, b, ALL_SCOPES))
        response = ATTEMPTS[attempt](http, intruder, victim.ref, victim.artefact["id"])
        after = victim.snapshot(http)
    _assert_not_found(response, victim)
    assert after == victim.summary


def test_other_tenant_writes_under_the_same_ref_land_in_its_own_subject(
    server: ServerThread, new_tenant: Callable[[], Tenant]
) -> None:
    a, b = new_tenant(), new_tenant()
    with server.client() as http:
        victim = Victim(http, a)
        b_keys = data_keys(http, b)
        # B may have a subject with the same reference: it is B's own, sharing nothing.
        replaced = put_record(http, b_keys.ingest, victim.ref, "profile", b'"b-value"')
        b_upload = uploaded(http, b_keys.ingest, victim.ref, b"tenant B bytes")
        b_sees = http.get(subject_url(victim.ref, "artefacts"), headers=auth(b_keys.read))
        b_summary = http.get(subject_url(victim.ref), headers=auth(b_keys.read))
        a_via_b_ref = http.get(
            artefact_url(victim.ref, b_upload["id"], "content"), headers=auth(victim.keys.read)
        )
        after = victim.snapshot(http)
    assert replaced.status_code == 201, replaced.text  # created, not a replace of A's
    assert replaced.json()["version"] == 1
    assert [item["id"] for item in b_sees.json()["items"]] == [b_upload["id"]]
    assert b_summary.json()["subject_ref_hash"] != victim.summary["summary"]["subject_ref_hash"]
    _assert_not_found(a_via_b_ref, victim)
    assert after == victim.summary


def test_artefact_id_under_another_of_the_tenants_own_refs_is_404(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        victim = Victim(http, tenant)
        other_ref = f"other-{uuid.uuid4().hex[:10]}"
        assert put_record(http, victim.keys.ingest, other_ref, "x", b"1").status_code == 201
        aid = victim.artefact["id"]
        read, ingest = auth(victim.keys.read), auth(victim.keys.ingest)
        responses = [
            http.get(artefact_url(other_ref, aid), headers=read),
            http.get(artefact_url(other_ref, aid, "content"), headers=read),
            http.head(artefact_url(other_ref, aid, "content"), headers=read),
            http.delete(artefact_url(other_ref, aid), headers=ingest),
            http.post(artefact_url(other_ref, aid, "links"), headers=read),
            # A ref never written at all: the same answer.
            http.get(artefact_url(f"never-{uuid.uuid4().hex}", aid, "content"), headers=read),
        ]
        after = victim.snapshot(http)
    for response in responses:
        _assert_not_found(response, victim)
    assert after == victim.summary


def test_owner_still_reads_everything_positive_twin(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        victim = Victim(http, tenant)
        read = auth(victim.keys.read)
        responses = [
            ATTEMPTS[name](http, read, victim.ref, victim.artefact["id"])
            for name in ATTEMPTS
            if name.startswith(("GET", "HEAD"))
        ]
    for response in responses:
        assert response.status_code in (200, 206), (response.request.url, response.text)
