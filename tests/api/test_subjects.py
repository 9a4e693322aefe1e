"""/v1/subjects/{ref}: references (percent-encoding, `/`, NFC), the summary, restriction of
processing and the export (API.md "Conventions", "Subjects", "Scopes"; DESIGN.md
"Deletion guarantees")."""

from __future__ import annotations

import io
import json
import re
import unicodedata
import uuid
import zipfile
from typing import Any

import httpx
import pytest

from tests.api.helpers import (
    DataKeys,
    artefact_url,
    auth,
    create_key,
    data_keys,
    parse_time,
    put_record,
    record_url,
    ref_path,
    sha256_hex,
    subject_url,
    upload,
    uploaded,
)
from tests.jobs import run_worker_pass
from tests.support import ServerThread, Tenant, problem


# Its worker passes run on a vault of this module's own (tests/conftest.py `own_vault`):
# on the session's they worked through every erasure and hold queued all session.
@pytest.fixture(scope="module")
def server(own_vault: ServerThread) -> ServerThread:
    return own_vault


def _suffix() -> str:
    return uuid.uuid4().hex[:10]


def _ref() -> str:
    return f"user-{_suffix()}"


def _summary(http: httpx.Client, key: dict[str, Any], ref: str) -> dict[str, Any]:
    response = http.get(subject_url(ref), headers=auth(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _restricted(response: httpx.Response) -> None:
    assert response.status_code == 403, (response.request.url, response.status_code)
    assert problem(response)["type"].endswith("/restricted"), response.text


# --- references ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stem",
    [
        "org/user-1",
        "a/b/c/",
        "/leading-slash",
        "with space",
        "100%",
        "q?x=1&y=2#frag",
        "plus+sign",
        "emoji-😀",
        "日本語",
        "tab\tand;semicolon",
    ],
    ids=[
        "slash",
        "slashes",
        "leading-slash",
        "space",
        "percent",
        "query-and-fragment",
        "plus",
        "emoji",
        "cjk",
        "tab-semicolon",
    ],
)
def test_ref_round_trips_through_percent_encoding(
    server: ServerThread, tenant: Tenant, stem: str
) -> None:
    ref = f"{stem}-{_suffix()}"
    with server.client() as http:
        keys = data_keys(http, tenant)
        record = put_record(http, keys.ingest, ref, "profile", b'{"k": 1}')
        artefact = upload(http, keys.ingest, ref, b"bytes")
        fetched = http.get(record_url(ref, "profile"), headers=auth(keys.read))
        summary = http.get(subject_url(ref), headers=auth(keys.read))
    assert record.status_code == 201, record.text
    assert artefact.status_code == 201, artefact.text
    assert artefact.json()["subject_ref"] == ref
    assert fetched.content == b'{"k": 1}'
    assert summary.status_code == 200, summary.text
    assert summary.json()["subject_ref"] == ref
    assert summary.json()["ref"] == ref


def test_slash_ref_is_not_confused_with_its_prefix(server: ServerThread, tenant: Tenant) -> None:
    base = f"org-{_suffix()}"
    with server.client() as http:
        keys = data_keys(http, tenant)
        assert put_record(http, keys.ingest, base, "r", b'"parent"').status_code == 201
        assert put_record(http, keys.ingest, f"{base}/child", "r", b'"child"').status_code == 201
        parent = http.get(record_url(base, "r"), headers=auth(keys.read))
        child = http.get(record_url(f"{base}/child", "r"), headers=auth(keys.read))
        parent_summary = _summary(http, keys.read, base)
        child_summary = _summary(http, keys.read, f"{base}/child")
    assert parent.content == b'"parent"'
    assert child.content == b'"child"'
    assert parent_summary["subject_ref_hash"] != child_summary["subject_ref_hash"]


def test_nfc_and_nfd_spellings_are_the_same_subject(server: ServerThread, tenant: Tenant) -> None:
    nfc = f"jos\u00e9-{_suffix()}"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    assert ref_path(nfc) != ref_path(nfd)
    with server.client() as http:
        keys = data_keys(http, tenant)
        written = put_record(http, keys.ingest, nfc, "profile", b'{"v": "nfc"}')
        read = http.get(record_url(nfd, "profile"), headers=auth(keys.read))
        artefact = uploaded(http, keys.ingest, nfd, b"via nfd")
        listed = http.get(subject_url(nfc, "artefacts"), headers=auth(keys.read))
        by_nfd = _summary(http, keys.read, nfd)
        by_nfc = _summary(http, keys.read, nfc)
    assert written.status_code == 201, written.text
    assert read.status_code == 200, read.text
    assert read.content == b'{"v": "nfc"}'
    assert artefact["subject_ref"] == nfc
    assert [item["id"] for item in listed.json()["items"]] == [artefact["id"]]
    assert by_nfd["subject_ref"] == by_nfc["subject_ref"] == nfc
    assert by_nfd["subject_ref_hash"] == by_nfc["subject_ref_hash"]


def test_ref_of_200_characters_after_nfc_is_accepted(server: ServerThread, tenant: Tenant) -> None:
    exact = "a" * 190 + _suffix()
    assert len(exact) == 200
    # 199 characters and an "é" written decomposed: 201 code points, 200 after NFC.
    decomposed = "b" * 189 + _suffix() + "e\u0301"
    assert len(decomposed) == 201
    assert len(unicodedata.normalize("NFC", decomposed)) == 200
    with server.client() as http:
        keys = data_keys(http, tenant)
        first = put_record(http, keys.ingest, exact, "r", b"1")
        second = put_record(http, keys.ingest, decomposed, "r", b"2")
        summary = _summary(http, keys.read, decomposed)
    assert first.status_code == 201, first.text
    assert second.status_code == 201, second.text
    assert summary["subject_ref"] == unicodedata.normalize("NFC", decomposed)


@pytest.mark.parametrize("length", [201, 1000])
def test_ref_longer_than_200_characters_is_422(
    server: ServerThread, tenant: Tenant, length: int
) -> None:
    ref = ("x" * length)[: length - 10] + _suffix()
    assert len(ref) == length
    with server.client() as http:
        keys = data_keys(http, tenant)
        responses = [
            put_record(http, keys.ingest, ref, "r", b"1"),
            upload(http, keys.ingest, ref, b"x"),
            http.get(subject_url(ref), headers=auth(keys.read)),
            http.get(record_url(ref, "r"), headers=auth(keys.read)),
        ]
    for response in responses:
        assert response.status_code == 422, (response.request.method, response.text)
        assert "ref" in [e.get("field") for e in problem(response).get("errors") or []]
        assert ref not in response.text


# --- summary ------------------------------------------------------------------------------


def test_summary_counts_artefacts_records_and_bytes_per_category(
    server: ServerThread, tenant: Tenant
) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        one = uploaded(http, keys.ingest, ref, b"r" * 100, category="recording")
        uploaded(http, keys.ingest, ref, b"r" * 250, category="recording")
        uploaded(http, keys.ingest, ref, b"t" * 10, category="transcript")
        uploaded(http, keys.ingest, ref, b"", category="transcript")
        assert put_record(http, keys.ingest, ref, "profile", b'{"a": 1}').status_code == 201
        assert put_record(http, keys.ingest, ref, "prefs", b"[]").status_code == 201
        assert put_record(http, keys.ingest, ref, "inv", b"{}", "billing").status_code == 201
        summary = _summary(http, keys.read, ref)
        gone = http.delete(artefact_url(ref, one["id"]), headers=auth(keys.ingest))
        assert gone.status_code == 204, gone.text
        gone = http.delete(record_url(ref, "prefs"), headers=auth(keys.ingest))
        assert gone.status_code == 204, gone.text
        after = _summary(http, keys.read, ref)
    assert summary["ref"] == ref
    assert summary["subject_ref"] == ref
    assert summary["subject_ref_hash"] == one["subject_ref_hash"]
    assert re.fullmatch(r"[0-9a-f]{64}", summary["subject_ref_hash"])
    assert summary["status"] == "active"
    assert summary["created_at"].endswith("Z")
    parse_time(summary["created_at"])
    categories = summary["categories"]
    assert categories["recording"] == {"artefacts": 2, "records": 0, "bytes": 350}
    assert categories["transcript"] == {"artefacts": 2, "records": 0, "bytes": 10}
    assert categories["account"]["artefacts"] == 0
    assert categories["account"]["records"] == 2
    assert categories["billing"]["records"] == 1
    for name in ("support",):
        assert categories.get(name, {"artefacts": 0, "records": 0}).get("artefacts", 0) == 0
        assert categories.get(name, {"records": 0}).get("records", 0) == 0
    assert after["categories"]["recording"] == {"artefacts": 1, "records": 0, "bytes": 250}
    assert after["categories"]["account"]["records"] == 1
    assert after["created_at"] == summary["created_at"]


def test_unknown_subject_is_404(server: ServerThread, tenant: Tenant) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        responses = [
            http.get(subject_url(ref), headers=auth(keys.read)),
            http.get(subject_url(ref, "export"), headers=auth(keys.read)),
            http.get(subject_url(ref, "records", "r"), headers=auth(keys.read)),
        ]
    for response in responses:
        assert response.status_code == 404, response.text
        problem(response)
        assert ref not in response.text


def test_summary_needs_the_read_scope(server: ServerThread, tenant: Tenant) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        assert put_record(http, keys.ingest, ref, "r", b"1").status_code == 201
        by_admin = http.get(subject_url(ref), headers=auth(keys.admin))
        by_ingest = http.get(subject_url(ref), headers=auth(keys.ingest))
        by_compliance = http.get(subject_url(ref), headers=auth(keys.compliance))
    assert by_admin.status_code == 403
    problem(by_admin)
    assert by_ingest.status_code == 403
    assert by_compliance.status_code == 200


def _erasure(http: httpx.Client, key: dict[str, Any], erasure_id: str) -> dict[str, Any]:
    shown: dict[str, Any] = http.get(f"/v1/erasures/{erasure_id}", headers=auth(key)).json()
    return shown


def test_summary_says_erased_after_the_erasure_ran_and_active_after_a_new_write(
    server: ServerThread, tenant: Tenant
) -> None:
    """API.md: status `erased`; data written afterwards is a new life (status `active`).
    A held erasure is done except for what the hold keeps: the subject is erased too."""
    ref, kept = _ref(), _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        privacy = create_key(http, tenant, ["erasure"])
        for subject in (ref, kept):
            uploaded(http, keys.ingest, subject, b"call", category="recording")
            assert put_record(http, keys.ingest, subject, "profile", b"{}").status_code == 201
        hold = http.post(
            "/v1/holds",
            json={"subject_ref": kept, "categories": ["recording"], "reason": "billing",
                  "reference": "inv-1"},
            headers=auth(keys.compliance),
        )  # fmt: skip
        assert hold.status_code == 201, hold.text
        before = _summary(http, keys.read, ref)
        erasures = []
        for subject in (ref, kept):
            requested = http.post(subject_url(subject, "erasure"), headers=auth(privacy))
            assert requested.status_code == 202, requested.text
            erasures.append(requested.json()["id"])
        run_worker_pass(server)
        done = [_erasure(http, privacy, erasure_id) for erasure_id in erasures]
        erased = _summary(http, keys.read, ref)
        erased_kept = _summary(http, keys.compliance, kept)
        exported = http.get(subject_url(ref, "export"), headers=auth(keys.read))
        assert put_record(http, keys.ingest, ref, "profile", b'"again"').status_code == 201
        reborn = _summary(http, keys.read, ref)
    assert before["status"] == "active"
    assert [d["status"] for d in done] == ["completed", "held"]
    assert erased["status"] == "erased"
    assert erased["categories"] == {}
    assert erased_kept["status"] == "erased"
    assert erased_kept["categories"]["recording"]["artefacts"] == 1
    assert exported.status_code == 200, exported.text[:500]
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(exported.content)).read("manifest.json"))
    assert manifest["status"] == "erased"
    assert manifest["records"] == [] and manifest["artefacts"] == []
    assert reborn["status"] == "active"
    assert reborn["categories"] == {"account": {"artefacts": 0, "records": 1, "bytes": 7}}


def test_summary_stays_active_while_an_erasure_waits_and_after_it_is_cancelled(
    server: ServerThread, tenant: Tenant
) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        privacy = create_key(http, tenant, ["erasure"])
        grace = http.patch(
            "/v1/tenant/settings", json={"erasure_grace_hours": 48}, headers=tenant.auth()
        )
        assert grace.status_code == 200, grace.text
        assert put_record(http, keys.ingest, ref, "profile", b"{}").status_code == 201
        requested = http.post(subject_url(ref, "erasure"), headers=auth(privacy))
        waiting = _summary(http, keys.read, ref)
        cancel = f"/v1/erasures/{requested.json()['id']}/cancel"
        cancelled = http.post(cancel, headers=auth(privacy))
        after_cancel = _summary(http, keys.read, ref)
    assert requested.status_code == 202, requested.text
    assert waiting["status"] == "active"
    assert cancelled.status_code == 200, cancelled.text
    assert after_cancel["status"] == "active"


# --- restriction --------------------------------------------------------------------------


def _restrictor(http: httpx.Client, tenant: Tenant) -> dict[str, Any]:
    """The privacy team's key (compliance and erasure: whichever of them restricts)."""
    return create_key(http, tenant, ["compliance", "erasure"])


def _populated(http: httpx.Client, keys: DataKeys, ref: str) -> dict[str, Any]:
    created = put_record(http, keys.ingest, ref, "profile", b'{"x": "restricted-v"}')
    assert created.status_code == 201, created.text
    return uploaded(http, keys.ingest, ref, b"restricted-bytes", content_type="audio/ogg")


def test_restricted_subject_is_read_only_by_compliance(
    server: ServerThread, tenant: Tenant
) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        privacy = _restrictor(http, tenant)
        artefact = _populated(http, keys, ref)
        restricted = http.post(
            subject_url(ref, "restriction"),
            json={"reason": "data subject contests accuracy"},
            headers=auth(privacy),
        )
        content_url = artefact_url(ref, artefact["id"], "content")
        by_read = [
            http.get(record_url(ref, "profile"), headers=auth(keys.read)),
            http.get(content_url, headers=auth(keys.read)),
            http.get(content_url, headers={**auth(keys.read), "Range": "bytes=0-3"}),
            http.get(subject_url(ref, "export"), headers=auth(keys.read)),
        ]
        by_compliance = [
            http.get(record_url(ref, "profile"), headers=auth(keys.compliance)),
            http.get(content_url, headers=auth(keys.compliance)),
            http.get(subject_url(ref, "export"), headers=auth(keys.compliance)),
        ]
        summary = _summary(http, keys.compliance, ref)
    assert restricted.status_code == 200, restricted.text
    assert restricted.json()["status"] == "restricted"
    assert summary["status"] == "restricted"
    for response in by_read:
        _restricted(response)
        assert b"restricted-bytes" not in response.content
        assert b"restricted-v" not in response.content
    assert [r.status_code for r in by_compliance] == [200, 200, 200]
    assert by_compliance[0].content == b'{"x": "restricted-v"}'
    assert by_compliance[1].content == b"restricted-bytes"


def test_restricted_subject_takes_no_new_data(server: ServerThread, tenant: Tenant) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        privacy = _restrictor(http, tenant)
        _populated(http, keys, ref)
        assert (
            http.post(
                subject_url(ref, "restriction"), json={"reason": "objection"}, headers=auth(privacy)
            ).status_code
            == 200
        )
        writes = [
            put_record(http, keys.ingest, ref, "profile", b'"overwritten"'),
            put_record(http, keys.ingest, ref, "new-one", b'"new"'),
            upload(http, keys.ingest, ref, b"more"),
        ]
        record = http.get(record_url(ref, "profile"), headers=auth(keys.compliance))
        listed = http.get(subject_url(ref, "artefacts"), headers=auth(keys.compliance))
    for response in writes:
        _restricted(response)
    assert record.content == b'{"x": "restricted-v"}'
    assert len(listed.json()["items"]) == 1


def test_lifting_the_restriction_lets_read_and_ingest_work_again(
    server: ServerThread, tenant: Tenant
) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        privacy = _restrictor(http, tenant)
        artefact = _populated(http, keys, ref)
        on = http.post(subject_url(ref, "restriction"), json={"reason": "r"}, headers=auth(privacy))
        off = http.delete(subject_url(ref, "restriction"), headers=auth(privacy))
        record = http.get(record_url(ref, "profile"), headers=auth(keys.read))
        content = http.get(artefact_url(ref, artefact["id"], "content"), headers=auth(keys.read))
        write = put_record(http, keys.ingest, ref, "profile", b'"after"')
        summary = _summary(http, keys.read, ref)
    assert on.status_code == 200
    assert off.status_code == 200, off.text
    assert off.json()["status"] == "active"
    assert record.content == b'{"x": "restricted-v"}'
    assert content.content == b"restricted-bytes"
    assert write.status_code == 200
    assert summary["status"] == "active"


def test_read_ingest_and_admin_keys_cannot_restrict_or_lift(
    server: ServerThread, tenant: Tenant
) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        privacy = _restrictor(http, tenant)
        _populated(http, keys, ref)
        attempts = [
            http.post(subject_url(ref, "restriction"), json={"reason": "r"}, headers=auth(k))
            for k in (keys.read, keys.ingest, keys.admin)
        ]
        assert (
            http.post(
                subject_url(ref, "restriction"), json={"reason": "r"}, headers=auth(privacy)
            ).status_code
            == 200
        )
        lifts = [
            http.delete(subject_url(ref, "restriction"), headers=auth(k))
            for k in (keys.read, keys.ingest, keys.admin)
        ]
        summary = _summary(http, keys.compliance, ref)
    for response in attempts + lifts:
        assert response.status_code == 403, response.text
        problem(response)
    assert summary["status"] == "restricted"


@pytest.mark.parametrize(
    "body", [{}, {"reason": ""}, {"reason": 7}], ids=["missing", "empty", "not-a-string"]
)
def test_restriction_without_a_reason_is_422(
    server: ServerThread, tenant: Tenant, body: dict[str, Any]
) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        privacy = _restrictor(http, tenant)
        _populated(http, keys, ref)
        refused = http.post(subject_url(ref, "restriction"), json=body, headers=auth(privacy))
        summary = _summary(http, keys.read, ref)
    assert refused.status_code == 422, refused.text
    assert "reason" in [e.get("field") for e in problem(refused).get("errors") or []]
    assert summary["status"] == "active"


# --- export -------------------------------------------------------------------------------


def test_export_is_a_zip_with_manifest_records_and_every_artefact(
    server: ServerThread, tenant: Tenant
) -> None:
    ref = f"org/export-{_suffix()}"
    records = {
        "profile": (b'{"email": "u@example.org"}', "account"),
        "invoice-1": (b"[1, 2, 3]", "billing"),
    }
    blobs = [
        (b"\x00" * 1000 + b"call", "recording", "audio/ogg", "call.ogg"),
        (b"transcript text", "transcript", "text/plain", "UTF-8''na%C3%AFve.txt"),
        (b"", "support", None, None),
    ]
    with server.client() as http:
        keys = data_keys(http, tenant)
        made = []
        for name, (body, category) in records.items():
            assert put_record(http, keys.ingest, ref, name, body, category).status_code == 201
        for data, category, content_type, filename in blobs:
            made.append(
                uploaded(
                    http,
                    keys.ingest,
                    ref,
                    data,
                    category=category,
                    content_type=content_type,
                    filename=filename,
                )
            )
        doomed = uploaded(http, keys.ingest, ref, b"deleted before export")
        gone = http.delete(artefact_url(ref, doomed["id"]), headers=auth(keys.ingest))
        assert gone.status_code == 204, gone.text
        listed = http.get(subject_url(ref, "records"), headers=auth(keys.read)).json()["items"]
        exported = http.get(subject_url(ref, "export"), headers=auth(keys.read))
    assert exported.status_code == 200, exported.text[:500]
    assert exported.headers["Content-Type"].startswith("application/zip")
    archive = zipfile.ZipFile(io.BytesIO(exported.content))
    assert archive.testzip() is None
    names = set(archive.namelist())
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["subject_ref"] == ref
    assert manifest["holds"] == []
    assert manifest["erasures"] == []

    by_name = {r["name"]: r for r in manifest["records"]}
    assert set(by_name) == set(records)
    for item in listed:
        for field in ("name", "category", "version", "updated_at"):
            assert by_name[item["name"]][field] == item[field]
    for name, (body, _category) in records.items():
        assert archive.read(f"records/{name}.json") == body

    by_id = {a["id"]: a for a in manifest["artefacts"]}
    assert set(by_id) == {m["id"] for m in made}
    for meta, (data, _category, _type, _filename) in zip(made, blobs, strict=True):
        entry = by_id[meta["id"]]
        for field in ("category", "content_type", "filename", "size", "sha256", "created_at"):
            assert entry[field] == meta[field], field
        assert entry["path"] in names
        content = archive.read(entry["path"])
        assert len(content) == entry["size"] == len(data)
        assert sha256_hex(content) == entry["sha256"]
        assert content == data
    assert by_id[made[1]["id"]]["filename"] == "naïve.txt"
    assert doomed["id"] not in exported.content.decode("latin-1")
    assert b"deleted before export" not in exported.content


def test_export_manifest_lists_the_subjects_holds_and_erasures(
    server: ServerThread, tenant: Tenant
) -> None:
    """API.md: manifest.json holds records, artefact metadata, holds, erasures. Holds
    that cover the subject (its own, and tenant-wide ones in force during its life), with
    what the person may be told: not the hold's reason, reference or note."""
    ref, other = _ref(), _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        privacy = create_key(http, tenant, ["erasure"])
        officer = auth(keys.compliance)

        def place(**fields: Any) -> dict[str, Any]:
            response = http.post("/v1/holds", json=fields, headers=officer)
            assert response.status_code == 201, response.text
            body: dict[str, Any] = response.json()
            return body

        # In force only before the subject existed: it never covered the subject.
        earlier = place(reason="billing", reference="old-tenant-hold")
        released = http.post(
            f"/v1/holds/{earlier['id']}/release", json={"reason": "done"}, headers=officer
        )
        assert released.status_code == 200, released.text
        grace = http.patch(
            "/v1/tenant/settings", json={"erasure_grace_hours": 48}, headers=tenant.auth()
        )
        assert grace.status_code == 200, grace.text
        for subject in (ref, other):
            assert put_record(http, keys.ingest, subject, "profile", b"{}").status_code == 201
        own = place(
            subject_ref=ref, categories=["billing", "recording"], reason="fraud_investigation",
            reference="CASE-4711-internal", note="suspected card fraud, do not tell",
            expires_at="2099-01-01T00:00:00Z",
        )  # fmt: skip
        tenant_wide = place(reason="litigation", reference="LIT-tenant-99")
        ended = place(subject_ref=ref, reason="regulatory", reference="audit-2")
        assert (
            http.post(f"/v1/holds/{ended['id']}/release", json={"reason": "r"}, headers=officer)
        ).status_code == 200
        place(subject_ref=other, reason="billing", reference="other-subject")
        erasure = http.post(
            subject_url(ref, "erasure"),
            json={"reason": "asked by mail", "reference": "TICKET-123"},
            headers=auth(privacy),
        )
        other_erasure = http.post(subject_url(other, "erasure"), headers=auth(privacy))
        exported = http.get(subject_url(ref, "export"), headers=auth(keys.read))
    assert erasure.status_code == 202, erasure.text
    assert other_erasure.status_code == 202, other_erasure.text
    assert exported.status_code == 200, exported.text[:500]
    text = zipfile.ZipFile(io.BytesIO(exported.content)).read("manifest.json").decode()
    manifest = json.loads(text)

    holds = {h["id"]: h for h in manifest["holds"]}
    assert set(holds) == {own["id"], tenant_wide["id"], ended["id"]}
    for hold in holds.values():
        assert set(hold) == {"id", "categories", "status", "placed_at", "expires_at",
                             "released_at"}  # fmt: skip
    assert holds[own["id"]] == {
        "id": own["id"],
        "categories": ["billing", "recording"],
        "status": "active",
        "placed_at": own["placed_at"],
        "expires_at": own["expires_at"],
        "released_at": None,
    }
    assert holds[tenant_wide["id"]]["categories"] is None
    assert holds[tenant_wide["id"]]["status"] == "active"
    assert holds[ended["id"]]["status"] == "released"
    assert holds[ended["id"]]["released_at"] is not None
    for internal in ("CASE-4711", "card fraud", "fraud_investigation", "LIT-tenant", "TICKET-123",
                     "asked by mail", "litigation", own["placed_by"]):  # fmt: skip
        assert internal not in text, internal

    requested = erasure.json()
    assert manifest["erasures"] == [
        {
            "id": requested["id"],
            "status": "scheduled",
            "requested_at": requested["requested_at"],
            "not_before": requested["not_before"],
            "due_at": requested["due_at"],
            "completed_at": None,
        }
    ]


def test_export_needs_the_read_scope(server: ServerThread, tenant: Tenant) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        assert put_record(http, keys.ingest, ref, "r", b'"export-me"').status_code == 201
        refused = [
            http.get(subject_url(ref, "export"), headers=auth(k)) for k in (keys.ingest, keys.admin)
        ]
        allowed = http.get(subject_url(ref, "export"), headers=auth(keys.compliance))
    for response in refused:
        assert response.status_code == 403
        problem(response)
        assert b"export-me" not in response.content
    assert allowed.status_code == 200
    assert zipfile.ZipFile(io.BytesIO(allowed.content)).read("records/r.json") == b'"export-me"'
