"""Red team 20: which API answers carrying a subject's data tell caches not to keep them.

A JSON answer that names a subject (its reference), a decrypted filename, a hold's case
reference and note, a disclosure's description or client IPs is as sensitive as a
record's value, which is sent with `Cache-Control: private, no-store`; a browser, a
corporate proxy or the tenant's own HTTP cache keeping it leaves a readable copy the
vault's erasure cannot reach (DESIGN.md "Deletion guarantees": a shortcut that leaves a
readable copy somewhere is a defect). The record value, an artefact's content and the
export already say no-store (held); the others do not (finding, strict xfails).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.api.helpers import auth, data_keys, put_record, subject_url, upload
from tests.support import ServerThread, Tenant, make_tenant


@dataclass(frozen=True)
class Planted:
    ref: str
    artefact_id: str
    hold_id: str
    keys: Any


@pytest.fixture(scope="module")
def planted(server: ServerThread) -> Planted:
    tenant: Tenant = make_tenant(server.settings, server.database_url)
    with server.client() as http:
        keys = data_keys(http, tenant)
        ref = f"rt20-cache-{uuid.uuid4().hex[:8]}"
        assert put_record(http, keys.ingest, ref, "email", b'{"v": "rt20"}').status_code == 201
        created = upload(http, keys.ingest, ref, b"rt20 bytes", filename="rt20-name.txt")
        assert created.status_code == 201, created.text
        hold = http.post(
            "/v1/holds",
            json={"subject_ref": ref, "reason": "billing", "reference": "rt20-case",
                  "note": "rt20 note"},
            headers=auth(keys.compliance),
        )  # fmt: skip
        assert hold.status_code == 201, hold.text
        disclosure = http.post(
            "/v1/disclosures",
            json={"subject_ref": ref, "recipient": "a court", "legal_basis": "art6-1-c",
                  "reference": "rt20-d", "categories": ["account"],
                  "description": "rt20 description", "disclosed_at": "2026-12-01T00:00:00Z"},
            headers=auth(keys.compliance),
        )  # fmt: skip
        assert disclosure.status_code == 201, disclosure.text
    return Planted(ref, created.json()["id"], hold.json()["id"], keys)


Request = Callable[[Planted], tuple[str, dict[str, str]]]

_NO_STORE_MISSING = pytest.mark.xfail(
    strict=True, reason="red team 20: a JSON answer with subject data has no Cache-Control"
)

ANSWERS: list[Any] = [
    # Held: these say no-store today.
    pytest.param(lambda p: (subject_url(p.ref, "records", "email"), auth(p.keys.read)),
                 id="record value"),
    pytest.param(lambda p: (subject_url(p.ref, "artefacts", p.artefact_id, "content"),
                            auth(p.keys.read)), id="artefact content"),
    # Findings: the subject's reference, decrypted filenames, a hold's case reference
    # and note, a disclosure's description, client IPs.
    pytest.param(lambda p: (subject_url(p.ref), auth(p.keys.read)),
                 id="subject (its reference)", marks=_NO_STORE_MISSING),
    pytest.param(lambda p: (subject_url(p.ref, "artefacts"), auth(p.keys.read)),
                 id="artefact listing (filenames)", marks=_NO_STORE_MISSING),
    pytest.param(lambda p: (subject_url(p.ref, "artefacts", p.artefact_id), auth(p.keys.read)),
                 id="artefact metadata (filename)", marks=_NO_STORE_MISSING),
    pytest.param(lambda p: (subject_url(p.ref, "records"), auth(p.keys.read)),
                 id="record listing", marks=_NO_STORE_MISSING),
    pytest.param(lambda p: (f"/v1/holds/{p.hold_id}", auth(p.keys.compliance)),
                 id="hold (case reference, note, subject reference)", marks=_NO_STORE_MISSING),
    pytest.param(lambda p: ("/v1/holds", auth(p.keys.compliance)),
                 id="hold listing", marks=_NO_STORE_MISSING),
    pytest.param(lambda p: ("/v1/disclosures", auth(p.keys.compliance)),
                 id="disclosure listing (description, subject references)",
                 marks=_NO_STORE_MISSING),
    pytest.param(lambda p: ("/v1/access-log", auth(p.keys.compliance)),
                 id="access log (client IPs)", marks=_NO_STORE_MISSING),
]  # fmt: skip


@pytest.mark.parametrize("request_of", ANSWERS)
def test_an_answer_with_subject_data_says_no_store(
    server: ServerThread, planted: Planted, request_of: Request
) -> None:
    url, headers = request_of(planted)
    with server.client() as http:
        response: httpx.Response = http.get(url, headers=headers)
    assert response.status_code == 200, response.text
    assert "no-store" in response.headers.get("cache-control", ""), url
