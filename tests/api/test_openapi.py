"""/openapi.json says what the code does: each documented answer is checked against a real
answer of the running vault (fields, types, status codes, headers, scopes)."""

from __future__ import annotations

import urllib.parse
import uuid
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from tests.api.helpers import (
    artefact_url,
    auth,
    create_key,
    operator_key,
    subject_url,
    upload,
    uploaded,
)
from tests.jobs import run_worker_pass
from tests.support import ServerThread, Tenant


# Its worker passes run on a vault of this module's own (tests/conftest.py `own_vault`):
# on the session's they worked through every erasure and hold queued all session.
@pytest.fixture(scope="module")
def server(own_vault: ServerThread) -> ServerThread:
    return own_vault


SCOPES = ("ingest", "read", "erasure", "compliance", "admin")
METHODS = ("get", "head", "put", "post", "patch", "delete")


def _document(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _schema(document: dict[str, Any], response: dict[str, Any], media: str) -> dict[str, Any]:
    return _resolve(document, _resolve(document, response)["content"][media]["schema"])


def _answer_schema(document: dict[str, Any], operation: dict[str, Any], status: int) -> Any:
    return _schema(document, operation["responses"][str(status)], "application/json")


def _conforms(
    document: dict[str, Any], schema: dict[str, Any], body: dict[str, Any], *, exact: bool = True
) -> None:
    """`body` is valid under `schema` (its references resolved in `document`); with
    `exact`, it has exactly the documented fields (a field the code sends but the document
    leaves out, or the reverse, fails)."""
    Draft202012Validator({**schema, "components": document["components"]}).validate(body)
    schema = _resolve(document, schema)
    if exact:
        assert set(body) == set(schema["properties"]), set(body) ^ set(schema["properties"])
    else:
        assert set(body) <= set(schema["properties"]), set(body) - set(schema["properties"])


def _params(operation: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p["in"], p["name"]): p for p in operation.get("parameters", [])}


def test_the_document_is_valid_openapi_3_1(server: ServerThread) -> None:
    with server.client() as http:
        document = _document(http)
    validate_openapi(document)


def test_erasure_request_documents_its_202_the_repeat_200_and_an_optional_body(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        document = _document(http)
        operation = document["paths"]["/v1/subjects/{ref}/erasure"]["post"]
        key = create_key(http, tenant, ["erasure"])
        first = http.post(subject_url("oa-erasure", "erasure"), headers=auth(key))
        repeat = http.post(
            subject_url("oa-erasure", "erasure"), json={"reason": "ticket 7"}, headers=auth(key)
        )
    assert operation["requestBody"]["required"] is False
    assert (first.status_code, repeat.status_code) == (202, 200), first.text
    assert repeat.json()["id"] == first.json()["id"]
    for answered in (first, repeat):
        schema = _answer_schema(document, operation, answered.status_code)
        assert {"id", "status", "requested_at", "not_before", "due_at"} <= set(schema["required"])
        _conforms(document, schema, answered.json())


def test_hold_release_documents_the_two_key_202_and_the_200(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        document = _document(http)
        operation = document["paths"]["/v1/holds/{hold_id}/release"]["post"]
        first_key = operator_key(server, tenant, ["compliance"], "officer-a")
        second_key = operator_key(server, tenant, ["compliance"], "officer-b")
        placed = http.post(
            "/v1/holds",
            json={"subject_ref": "oa-held", "reason": "litigation", "reference": "case 1"},
            headers=auth(first_key),
        ).json()
        url = f"/v1/holds/{placed['id']}/release"
        requested = http.post(url, json={"reason": "settled"}, headers=auth(first_key))
        released = http.post(url, json={"reason": "settled"}, headers=auth(second_key))
    assert (requested.status_code, released.status_code) == (202, 200), requested.text
    assert requested.json()["release_requested_by"] == first_key["id"]
    assert requested.json()["released_at"] is None
    assert released.json()["released_at"] is not None
    for answered in (requested, released):
        schema = _answer_schema(document, operation, answered.status_code)
        _conforms(document, schema, answered.json(), exact=False)
    accepted = _answer_schema(document, operation, 202)
    assert {"release_requested_by", "release_requested_at"} <= set(accepted["properties"])


def test_tenant_closure_answers_match_their_schemas(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        document = _document(http)
        operations = document["paths"]["/v1/tenant/closure"]
        scheduled = http.post(
            "/v1/tenant/closure", json={"reason": "contract ended"}, headers=tenant.auth()
        )
        cancelled = http.delete("/v1/tenant/closure", headers=tenant.auth())
    assert (scheduled.status_code, cancelled.status_code) == (202, 200), scheduled.text
    assert (scheduled.json()["status"], cancelled.json()["status"]) == ("closing", "active")
    for method, answered in (("post", scheduled), ("delete", cancelled)):
        schema = _answer_schema(document, operations[method], answered.status_code)
        _conforms(document, schema, answered.json())


def test_erasure_receipt_matches_its_schema(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        document = _document(http)
        operation = document["paths"]["/v1/erasures/{erasure_id}/receipt"]["get"]
        writer = create_key(http, tenant, ["ingest"])
        officer = create_key(http, tenant, ["erasure"])
        http.put(
            subject_url("oa-receipt", "records", "profile"),
            params={"category": "account"},
            json={"plan": "basic"},
            headers=auth(writer),
        )
        erasure = http.post(subject_url("oa-receipt", "erasure"), headers=auth(officer)).json()
        run_worker_pass(server)
        shown = http.get(f"/v1/erasures/{erasure['id']}", headers=auth(officer)).json()
        assert shown["status"] == "completed", shown
        signed = http.get(f"/v1/erasures/{erasure['id']}/receipt", headers=auth(officer))
    assert signed.status_code == 200, signed.text
    schema = _answer_schema(document, operation, 200)
    _conforms(document, schema, signed.json())
    _conforms(document, schema["properties"]["receipt"], signed.json()["receipt"])


def test_disclosure_answers_match_their_schemas(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        document = _document(http)
        officer = create_key(http, tenant, ["compliance"])
        body = {
            "recipient": "Rechtbank",
            "legal_basis": "court order",
            "reference": "C-1",
            "categories": ["recording"],
            "disclosed_at": "2024-05-01T10:00:00Z",
        }
        created = http.post("/v1/disclosures", json=body, headers=auth(officer))
        shown = http.get(created.headers["location"], headers=auth(officer))
        listed = http.get("/v1/disclosures", headers=auth(officer))
    assert created.status_code == 201, created.text
    paths = document["paths"]
    post = paths["/v1/disclosures"]["post"]
    request_schema = post["requestBody"]["content"]["application/json"]["schema"]
    _conforms(document, request_schema, body, exact=False)
    _conforms(document, _answer_schema(document, post, 201), created.json())
    assert "Location" in post["responses"]["201"]["headers"]
    one = paths["/v1/disclosures/{disclosure_id}"]["get"]
    _conforms(document, _answer_schema(document, one, 200), shown.json())
    page = _answer_schema(document, paths["/v1/disclosures"]["get"], 200)
    _conforms(document, page, listed.json())
    for item in listed.json()["items"]:
        _conforms(document, page["properties"]["items"]["items"], item)


def _artefact(http: httpx.Client, tenant: Tenant) -> tuple[dict[str, Any], str]:
    ingest = create_key(http, tenant, ["ingest"])
    reader = create_key(http, tenant, ["read"])
    created = uploaded(http, ingest, "oa-content", bytes(range(100)), filename="call.wav")
    return reader, artefact_url("oa-content", created["id"], "content")


def test_artefact_content_documents_ranges_head_and_the_headers_it_sends(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        document = _document(http)
        path = document["paths"]["/v1/subjects/{ref}/artefacts/{artefact_id}/content"]
        reader, url = _artefact(http, tenant)
        answers = {
            ("get", 200): http.get(url, headers=auth(reader)),
            ("get", 206): http.get(url, headers={**auth(reader), "Range": "bytes=10-19"}),
            ("head", 206): http.head(url, headers={**auth(reader), "Range": "bytes=-5"}),
            ("head", 200): http.head(url, headers=auth(reader)),
            ("get", 416): http.get(url, headers={**auth(reader), "Range": "bytes=500-"}),
        }
    for method in ("get", "head"):
        assert ("header", "Range") in _params(path[method]), method
        assert {"200", "206", "416"} <= set(path[method]["responses"]), method
    for media in (path["get"]["responses"][code]["content"] for code in ("200", "206")):
        assert media["*/*"]["schema"] == {"type": "string", "format": "binary"}
    assert {"Content-Length", "ETag", "Accept-Ranges", "Content-Range"} <= set(
        path["get"]["responses"]["206"]["headers"]
    )
    for (method, status), answered in answers.items():
        assert answered.status_code == status, (method, status, answered.text)
        documented = _resolve(document, path[method]["responses"][str(status)])
        for name in documented.get("headers", {}):
            assert name in answered.headers, (method, status, name)
    assert answers[("get", 206)].content == bytes(range(10, 20))
    assert answers[("head", 206)].headers["Content-Range"] == "bytes 95-99/100"
    assert answers[("get", 416)].headers["Content-Range"] == "bytes */100"


def test_upload_documents_a_raw_body_and_the_parameters_the_code_reads(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        operation = _document(http)["paths"]["/v1/subjects/{ref}/artefacts"]["post"]
        ingest = create_key(http, tenant, ["ingest"])
        named = upload(http, ingest, "oa-upload", b"RIFF", content_type="audio/wav",
                       filename="call.wav")  # fmt: skip
        uncategorised = upload(http, ingest, "oa-upload", b"RIFF", category=None)
    body = operation["requestBody"]
    assert body["required"] is True
    assert {"type": "string", "format": "binary"} in [m["schema"] for m in body["content"].values()]
    assert "application/json" not in body["content"]
    params = _params(operation)
    assert ("header", "X-Filename") in params
    assert params[("query", "category")]["required"] is True
    assert named.status_code == 201, named.text
    assert (named.json()["filename"], named.json()["content_type"]) == ("call.wav", "audio/wav")
    assert uncategorised.status_code == 422


def test_record_put_documents_created_and_replaced(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        document = _document(http)
        operation = document["paths"]["/v1/subjects/{ref}/records/{name}"]["put"]
        ingest = create_key(http, tenant, ["ingest"])
        url = subject_url("oa-record", "records", "profile")
        created = http.put(url, params={"category": "account"}, json=[1], headers=auth(ingest))
        replaced = http.put(url, params={"category": "account"}, json=[2], headers=auth(ingest))
    assert (created.status_code, replaced.status_code) == (201, 200), created.text
    for answered in (created, replaced):
        schema = _answer_schema(document, operation, answered.status_code)
        _conforms(document, schema, answered.json())


def test_export_is_documented_as_the_zip_it_is(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        operation = _document(http)["paths"]["/v1/subjects/{ref}/export"]["get"]
        ingest = create_key(http, tenant, ["ingest"])
        reader = create_key(http, tenant, ["read"])
        uploaded(http, ingest, "oa-export", b"hello")
        exported = http.get(subject_url("oa-export", "export"), headers=auth(reader))
    assert exported.status_code == 200
    assert list(operation["responses"]["200"]["content"]) == ["application/zip"]
    assert exported.headers["content-type"] == "application/zip"
    assert exported.content.startswith(b"PK")


def _accepted(documented: str) -> set[str]:
    """The scopes `x-required-scope` names ("a or b"), with what API.md adds: the
    compliance scope also reads everything read may."""
    scopes = set(documented.split(" or "))
    assert scopes <= set(SCOPES), documented
    return scopes | ({"compliance"} if "read" in scopes else set())


def _example_url(path: str) -> str:
    filled = path.replace("{ref}", "oa-scopes").replace("{name}", "profile")
    ids = ("key_id", "artefact_id", "hold_id", "erasure_id", "disclosure_id", "webhook_id")
    for name in (*ids, "delivery_id"):
        filled = filled.replace("{" + name + "}", str(uuid.uuid4()))
    return filled


def _refused_for_scope(answered: httpx.Response) -> bool:
    if answered.status_code != 403:
        return False
    if answered.request.method == "HEAD":
        return True  # no body to name the problem type; the subject is never restricted
    problem_type: str = answered.json()["type"]
    return problem_type.endswith("/forbidden")


def test_documented_scopes_are_the_ones_the_code_accepts(
    server: ServerThread, tenant: Tenant
) -> None:
    """Every operation with a scope, called without a body by a key of each scope: the
    scope check comes first, so a refused scope answers 403 `forbidden` and an accepted
    one anything else (404, 415, 422 for the missing body, ...)."""
    with server.client() as http:
        keys = {scope: create_key(http, tenant, [scope]) for scope in SCOPES}
        mismatches = []
        for path, item in _document(http)["paths"].items():
            for method in METHODS:
                operation = item.get(method)
                if operation is None or "x-required-scope" not in operation:
                    continue
                accepted = _accepted(operation["x-required-scope"])
                for scope, key in keys.items():
                    answered = http.request(method, _example_url(path), headers=auth(key))
                    if _refused_for_scope(answered) == (scope in accepted):
                        mismatches.append((method, path, scope, answered.status_code))
    assert not mismatches


@pytest.mark.parametrize(
    "shown",
    [
        "header <code>X-Filename</code>",
        "header <code>Range</code>",
        "query <code>category</code>",
        "scope <code>erasure or compliance</code>",
        "Body: <code>application/octet-stream</code>",
        "JSON body (optional)",
    ],
)
def test_docs_page_shows_header_parameters_raw_bodies_and_scope_choices(
    server: ServerThread, shown: str
) -> None:
    with server.client() as http:
        page = http.get("/docs").text
    assert shown in page


def test_playback_links_are_documented_as_they_answer(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        document = _document(http)
        mint = document["paths"]["/v1/subjects/{ref}/artefacts/{artefact_id}/links"]["post"]
        play = document["paths"]["/playback/{token}"]
        reader, url = _artefact(http, tenant)
        minted = http.post(url.removesuffix("/content") + "/links", headers=auth(reader))
        path = urllib.parse.urlsplit(minted.json()["url"]).path
        answers = {
            ("get", 200): http.get(path),
            ("get", 206): http.get(path, headers={"Range": "bytes=0-9"}),
            ("head", 200): http.head(path),
            ("get", 416): http.get(path, headers={"Range": "bytes=500-"}),
        }
    assert minted.status_code == 201, minted.text
    _conforms(document, _answer_schema(document, mint, 201), minted.json())
    assert mint["x-required-scope"] == "read" and mint["requestBody"]["required"] is False
    for method in ("get", "head"):
        assert "security" not in play[method]  # the token in the path is the credential
        assert {"200", "206", "404", "416", "429"} <= set(play[method]["responses"]), method
    for (method, status), answered in answers.items():
        assert answered.status_code == status, (method, status, answered.text)
        documented = _resolve(document, play[method]["responses"][str(status)])
        for name in documented.get("headers", {}):
            assert name in answered.headers, (method, status, name)


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_every_operation_has_a_unique_id_a_known_tag_and_a_summary(server: ServerThread) -> None:
    with server.client() as http:
        document = _document(http)
    tags = {tag["name"] for tag in document["tags"]}
    ids = [operation["operationId"] for _, _, operation in _operations(document)]
    assert len(ids) == len(set(ids))
    for path, method, operation in _operations(document):
        assert operation["summary"].strip(), (method, path)
        assert len(operation["tags"]) == 1 and operation["tags"][0] in tags, (method, path)


def test_json_bodies_are_shared_component_schemas_with_required_fields(
    server: ServerThread,
) -> None:
    """Every JSON request body and answer is a model under components/schemas (the ones
    that are any JSON value, and this document itself, aside); an answer's model lists
    the fields it always carries as required."""
    with server.client() as http:
        document = _document(http)
    schemas = document["components"]["schemas"]
    free_form = {"any JSON value", "The OpenAPI document"}
    answered = set()
    for path, method, operation in _operations(document):
        bodies = [operation.get("requestBody", {}).get("content", {}).get("application/json")]
        for response in operation["responses"].values():
            media = _resolve(document, response).get("content", {}).get("application/json")
            bodies.append(media)
            if media and "$ref" in media["schema"]:
                answered.add(media["schema"]["$ref"].rsplit("/", 1)[1])
        for media in filter(None, bodies):
            schema = media["schema"]
            if "$ref" not in schema:
                assert {schema.get("description"), schema.get("type")} & free_form or (
                    path == "/openapi.json"
                ), (method, path)
                continue
            assert schema["$ref"].rsplit("/", 1)[1] in schemas, (method, path)
    assert len(answered) >= 20
    for name in answered:
        assert schemas[name]["required"], name
