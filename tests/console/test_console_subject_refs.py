"""One normaliser for subject references everywhere: what the console types reaches the
same pseudonym as what the API wrote, spaces and all."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.api.helpers import auth, create_key, put_record, record_url
from tests.console.support import form_token, sign_in
from tests.support import ServerThread, Tenant


def test_a_console_hold_covers_the_subject_the_api_wrote_with_spaces(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"])
        assert put_record(http, app, "zed ", "profile", b'{"v": 1}').status_code == 201
        sign_in(http, officer["secret"])
        token = form_token(http.get("/console/holds/new").text)
        placed = http.post(
            "/console/holds/new",
            data={"csrf_token": token, "subject_ref": "zed ", "reason": "litigation",
                  "reference": "L-8"},
        )  # fmt: skip
        refused = http.delete(record_url("zed ", "profile"), headers=auth(app))
        other = http.delete(record_url("zed", "profile"), headers=auth(app))
    assert placed.status_code == 303, placed.text
    assert refused.status_code == 409, refused.text
    assert refused.json()["holds"], "the hold placed in the console keeps the record"
    assert other.status_code == 404  # "zed" is another reference, never written


def test_console_access_log_search_finds_the_reference_as_written(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"])
        assert put_record(http, app, " yo", "profile", b"{}").status_code == 201
        sign_in(http, officer["secret"])
        token = form_token(http.get("/console/access-log").text)
        search = http.post("/console/access-log", data={"csrf_token": token, "subject_ref": " yo"})
        wanted = parse_qs(urlsplit(search.headers["location"]).query)["subject_ref_hash"][0]
        api_rows = http.get(
            "/v1/access-log", params={"subject_ref": " yo"}, headers=auth(officer)
        ).json()["items"]
    assert search.status_code == 303
    assert api_rows and {r["subject_ref_hash"] for r in api_rows} == {wanted}
