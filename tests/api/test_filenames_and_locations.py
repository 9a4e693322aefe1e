"""Filenames in and out (issue 18, item 10): a raw UTF-8 X-Filename is read as UTF-8 (it
was stored as latin-1 mojibake with a 201), bytes that are not UTF-8 are 422, and a
download names its file in Content-Disposition (RFC 6266/8187). Creates answer with a
Location naming the new resource."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.api.helpers import auth, create_key, subject_url, upload
from tests.support import ServerThread, Tenant, problem

NAME = "café € 2024.mp4"


@pytest.fixture
def app_key(server: ServerThread, tenant: Tenant) -> dict[str, Any]:
    with server.client() as http:
        return create_key(http, tenant, ["ingest", "read"])


def _upload_named(http: httpx.Client, key: dict[str, Any], ref: str, name: bytes) -> httpx.Response:
    return upload(http, key, ref, b"0123456789", headers={"X-Filename": name})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(NAME.encode("utf-8"), id="raw-utf-8"),
        pytest.param(b"UTF-8''caf%C3%A9%20%E2%82%AC%202024.mp4", id="rfc-8187"),
        pytest.param(b"utf-8'fr'caf%C3%A9%20%E2%82%AC%202024.mp4", id="rfc-8187-language"),
    ],
)
def test_a_utf_8_filename_is_kept_as_sent(
    server: ServerThread, app_key: dict[str, Any], sent: bytes
) -> None:
    ref = f"file-{uuid.uuid4()}"
    with server.client() as http:
        created = _upload_named(http, app_key, ref, sent)
        assert created.status_code == 201, created.text
        shown = http.get(subject_url(ref, "artefacts", created.json()["id"]), headers=auth(app_key))
    assert created.json()["filename"] == NAME  # not "cafÃ© â\x82¬ 2024.mp4"
    assert shown.json()["filename"] == NAME


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param("café.mp4".encode("latin-1"), id="latin-1-bytes"),
        pytest.param(b"\xff\xfe.mp4", id="not-utf-8"),
        pytest.param(b"UTF-8''caf%E9.mp4", id="rfc-8187-not-utf-8"),
        pytest.param("evil\u202etxt.exe".encode(), id="bidi-override"),
        pytest.param("a\u0085b".encode(), id="c1-control"),
        pytest.param(b"../etc/passwd", id="slash"),
    ],
)
def test_a_filename_that_is_not_clean_utf_8_is_422_and_nothing_is_stored(
    server: ServerThread, app_key: dict[str, Any], sent: bytes
) -> None:
    ref = f"file-{uuid.uuid4()}"
    with server.client() as http:
        refused = _upload_named(http, app_key, ref, sent)
        listed = http.get(subject_url(ref, "artefacts"), headers=auth(app_key))
    assert problem(refused)["status"] == 422
    assert problem(refused)["errors"][0]["field"] == "X-Filename"
    assert listed.status_code == 404 or listed.json()["items"] == []


def test_two_filenames_are_422(server: ServerThread, app_key: dict[str, Any]) -> None:
    with server.client() as http:
        refused = http.post(
            subject_url(f"file-{uuid.uuid4()}", "artefacts"),
            params={"category": "recording"},
            content=b"x",
            headers=[
                ("Authorization", f"Bearer {app_key['secret']}"),
                ("X-Filename", "a.mp4"),
                ("X-Filename", "b.mp4"),
            ],
        )
    assert problem(refused)["status"] == 422


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_download_names_its_file_in_content_disposition(
    server: ServerThread, app_key: dict[str, Any], method: str
) -> None:
    ref = f"file-{uuid.uuid4()}"
    with server.client() as http:
        created = _upload_named(http, app_key, ref, NAME.encode()).json()
        url = subject_url(ref, "artefacts", created["id"], "content")
        whole = http.request(method, url, headers=auth(app_key))
        ranged = http.request(method, url, headers={**auth(app_key), "Range": "bytes=2-4"})
    expected = (
        'attachment; filename="caf_ _ 2024.mp4"; '
        "filename*=UTF-8''caf%C3%A9%20%E2%82%AC%202024.mp4"
    )
    for response in (whole, ranged):
        assert response.status_code in (200, 206)
        assert response.headers["Content-Disposition"] == expected
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_download_without_a_filename_is_still_an_attachment(
    server: ServerThread, app_key: dict[str, Any]
) -> None:
    # A stored text/html artefact must never render as a page on the vault's origin.
    ref = f"file-{uuid.uuid4()}"
    with server.client() as http:
        created = upload(http, app_key, ref, b"<script>1</script>", content_type="text/html")
        url = subject_url(ref, "artefacts", created.json()["id"], "content")
        response = http.get(url, headers=auth(app_key))
    assert response.headers["Content-Disposition"] == "attachment"
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"


# --- Location on creates ------------------------------------------------------------------


def test_an_uploaded_artefact_is_named_by_location(
    server: ServerThread, app_key: dict[str, Any]
) -> None:
    ref = "location/with slash@example"
    with server.client() as http:
        created = upload(http, app_key, ref, b"abc")
        followed = http.get(created.headers["Location"], headers=auth(app_key))
    assert created.status_code == 201
    assert created.headers["Location"] == subject_url(ref, "artefacts", created.json()["id"])
    assert followed.status_code == 200 and followed.json()["id"] == created.json()["id"]


def test_a_created_record_is_named_by_location_and_a_replaced_one_is_not(
    server: ServerThread, app_key: dict[str, Any]
) -> None:
    url = subject_url(f"record-{uuid.uuid4()}", "records", "profile")
    headers = {**auth(app_key), "Content-Type": "application/json"}
    with server.client() as http:
        created = http.put(url, params={"category": "account"}, content=b"{}", headers=headers)
        replaced = http.put(url, content=b"[1]", headers=headers)
        followed = http.get(created.headers["Location"], headers=auth(app_key))
    assert created.status_code == 201 and created.headers["Location"] == url
    assert replaced.status_code == 200 and "Location" not in replaced.headers
    assert followed.json() == [1]


def test_a_placed_hold_and_a_requested_erasure_are_named_by_location(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        officer = auth(create_key(http, tenant, ["compliance", "erasure"]))
        hold = http.post(
            "/v1/holds", json={"reason": "billing", "reference": "L-1"}, headers=officer
        )
        erasure = http.post(subject_url(f"erase-{uuid.uuid4()}", "erasure"), headers=officer)
        hold_again = http.get(hold.headers["Location"], headers=officer)
        erasure_again = http.get(erasure.headers["Location"], headers=officer)
    assert hold.headers["Location"] == f"/v1/holds/{hold.json()['id']}"
    assert hold_again.json()["id"] == hold.json()["id"]
    assert erasure.status_code == 202
    assert erasure.headers["Location"] == f"/v1/erasures/{erasure.json()['id']}"
    assert erasure_again.json()["id"] == erasure.json()["id"]


def test_a_created_api_key_is_named_by_location(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        created = http.post(
            "/v1/api-keys", json={"name": "loc", "scopes": ["read"]}, headers=tenant.auth()
        )
        revoked = http.delete(created.headers["Location"], headers=tenant.auth())
    assert created.headers["Location"] == f"/v1/api-keys/{created.json()['id']}"
    assert revoked.status_code == 204


def test_an_idempotent_replay_keeps_the_location(
    server: ServerThread, app_key: dict[str, Any]
) -> None:
    ref = f"replay-{uuid.uuid4()}"
    with server.client() as http:
        first = upload(http, app_key, ref, b"abc", headers={"Idempotency-Key": "loc-1"})
        again = upload(http, app_key, ref, b"abc", headers={"Idempotency-Key": "loc-1"})
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
