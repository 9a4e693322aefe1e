"""Error responses and the operations endpoints (API.md Conventions, "Operations";
DESIGN.md "Failure behaviour", "Observability")."""

from __future__ import annotations

import re
import secrets
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Route

from tests.api.helpers import create_key, from_ip
from tests.support import ServerThread, Tenant, bearer, problem
from vault.api_routes import ROUTES
from vault.console.routes import ROUTES as CONSOLE_ROUTES
from vault.http.routing import MethodRoute

PROBLEM_FIELDS = {"type", "title", "status", "detail"}


def _route_table() -> list[tuple[str, str]]:
    table = []
    for route in ROUTES:
        assert isinstance(route, Route)
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                table.append((route.path, method.lower()))
    return table


# --- errors -------------------------------------------------------------------------------


# Test ids name the random UUIDs' paths: xdist workers each collect the suite and must
# arrive at the same ids.
@pytest.mark.parametrize(
    "path",
    ["/nope", "/v1/nothing-here", f"/v1/things/{uuid.uuid4()}", "/v2/api-keys"],
    ids=["nope", "nothing-here", "things-id", "v2-api-keys"],
)
def test_unknown_route_is_404_problem(server: ServerThread, path: str) -> None:
    with server.client() as http:
        response = http.get(path)
    assert response.status_code == 404
    body = problem(response)
    assert set(body) >= PROBLEM_FIELDS, body


def test_known_route_is_not_404(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        assert http.get("/v1/api-keys", headers=tenant.auth()).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/api-keys", {"GET", "POST"}),
        ("PATCH", "/v1/api-keys", {"GET", "POST"}),
        ("GET", f"/v1/api-keys/{uuid.uuid4()}", {"DELETE"}),
        ("DELETE", "/v1/access-log", {"GET"}),
        ("POST", "/healthz", {"GET"}),
    ],
    ids=["PUT-api-keys", "PATCH-api-keys", "GET-api-keys-id", "DELETE-access-log", "POST-healthz"],
)
def test_wrong_method_is_405_problem_with_allow_header(
    server: ServerThread, method: str, path: str, allowed: set[str]
) -> None:
    with server.client() as http:
        response = http.request(method, path)
    assert response.status_code == 405
    body = problem(response)
    assert set(body) >= PROBLEM_FIELDS, body
    listed = {m.strip().upper() for m in response.headers["Allow"].split(",")}
    assert listed - {"HEAD"} == allowed


def test_problem_body_carries_the_request_id(server: ServerThread, tenant: Tenant) -> None:
    # API.md, Conventions: X-Request-Id is "also in the problem+json body as request_id".
    with server.client() as http:
        responses = [
            http.get("/nope"),
            http.put("/v1/api-keys"),
            http.get("/v1/api-keys", headers=from_ip("198.51.100.90")),
            http.post("/v1/api-keys", json={"name": "x", "scopes": []}, headers=tenant.auth()),
        ]
    for response in responses:
        assert problem(response).get("request_id") == response.headers["X-Request-ID"]


# --- X-Request-ID -------------------------------------------------------------------------


def test_every_response_carries_a_distinct_request_id(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        responses = [
            http.get("/healthz"),
            http.get("/readyz"),
            http.get("/metrics"),
            http.get("/openapi.json"),
            http.get("/docs"),
            http.get("/nope"),
            http.put("/v1/api-keys"),
            http.get("/v1/tenant", headers=tenant.auth()),
            http.get("/v1/access-log", headers=bearer(compliance["secret"])),
            http.get("/v1/api-keys", headers=bearer(compliance["secret"])),
            http.get("/v1/api-keys", headers=from_ip("198.51.100.91")),
            http.post("/v1/api-keys", content=b"x", headers=tenant.auth()),
            http.post(
                "/v1/api-keys",
                content=b"{",
                headers={**tenant.auth(), "Content-Type": "application/json"},
            ),
            http.delete(f"/v1/api-keys/{uuid.uuid4()}", headers=tenant.auth()),
            http.head("/healthz"),
        ]
    ids = [r.headers.get("X-Request-ID") for r in responses]
    assert all(ids), [(r.request.url, r.status_code) for r in responses]
    assert len(set(ids)) == len(ids)
    assert len({r.status_code for r in responses}) >= 6


@pytest.mark.parametrize("sent", ["x" * 1000, "has spaces in it", "<script>", ""])
def test_insane_client_request_id_is_replaced(server: ServerThread, sent: str) -> None:
    with server.client() as http:
        response = http.get("/healthz", headers={"X-Request-Id": sent})
    assert response.headers["X-Request-ID"]
    assert response.headers["X-Request-ID"] != sent


def test_sane_client_request_id_is_echoed(server: ServerThread) -> None:
    sent = f"req-{uuid.uuid4()}"
    with server.client() as http:
        response = http.get("/healthz", headers={"X-Request-Id": sent})
    assert response.headers["X-Request-ID"] == sent


# --- health and readiness -----------------------------------------------------------------


def test_healthz_is_200(server: ServerThread) -> None:
    with server.client() as http:
        response = http.get("/healthz")
    assert response.status_code == 200


def test_readyz_is_200_with_database_and_blob_store_checks(server: ServerThread) -> None:
    with server.client() as http:
        response = http.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": True, "blob_store": True}


def test_ops_endpoints_need_no_key_and_ignore_a_bad_one(server: ServerThread) -> None:
    headers = {**bearer("dv_aaaaaaaaaaaa_nope"), **from_ip("198.51.100.92")}
    with server.client() as http:
        statuses = [http.get(p, headers=headers).status_code for p in ("/healthz", "/readyz") * 4]
    assert statuses == [200] * 8


# --- metrics ------------------------------------------------------------------------------


def test_metrics_count_requests_by_route_template(server: ServerThread) -> None:
    with server.client() as http:
        http.get("/healthz")
        response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = [
        sample
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]
    healthz = [
        s
        for s in samples
        if s.name == "datavault_http_requests_total" and s.labels.get("route") == "/healthz"
    ]
    assert healthz, response.text
    assert sum(s.value for s in healthz) >= 1
    assert re.search(r'^datavault_http_requests_total\{[^}]*route="/healthz"', response.text, re.M)


def test_metrics_labels_hold_no_ids_keys_or_client_chosen_values(
    server: ServerThread, tenant: Tenant
) -> None:
    key_id = str(uuid.uuid4())
    odd_path = f"/v1/no-such-thing/{uuid.uuid4()}"
    method = f"X{secrets.token_hex(6).upper()}"
    bad_key = f"dv_abcdefghijkl_{secrets.token_urlsafe(32)}"
    with server.client() as http:
        http.delete(f"/v1/api-keys/{key_id}", headers=tenant.auth())
        http.get(odd_path, headers=tenant.auth())
        http.request(method, "/healthz")
        http.request(method, odd_path)
        http.get("/v1/api-keys", headers={**bearer(bad_key), **from_ip("198.51.100.93")})
        response = http.get("/metrics")
    text = response.text
    for leaked in (
        key_id,
        odd_path,
        method,
        bad_key,
        "abcdefghijkl",
        tenant.admin_key,
        str(tenant.id),
    ):
        assert leaked not in text, leaked
    # The app serves the console's pages beside the API: a test that used the console on
    # this server before (in any order, on any xdist worker) leaves its routes' series.
    templates = {route.path for route in (*ROUTES, *CONSOLE_ROUTES)}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            route = sample.labels.get("route")
            if route is not None:
                assert route in templates or route.startswith("("), route
    assert 'route="/v1/api-keys/{key_id}"' in text


# --- API description ----------------------------------------------------------------------


def test_openapi_is_3_1_and_describes_every_route(server: ServerThread) -> None:
    with server.client() as http:
        response = http.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    missing = [(p, m) for p, m in _route_table() if m not in paths.get(p, {})]
    assert not missing
    assert len(_route_table()) >= 10


def test_openapi_names_the_idempotency_key_exactly_where_it_is_honoured(
    server: ServerThread,
) -> None:
    wrapped = {
        (route.path, method.lower())
        for route in ROUTES
        if isinstance(route, MethodRoute)
        for method, handler in route.handlers.items()
        if handler.__dict__.get("idempotent")
    }
    with server.client() as http:
        paths = http.get("/openapi.json").json()["paths"]
    documented = {
        (path, method)
        for path, operations in paths.items()
        for method, operation in operations.items()
        if isinstance(operation, dict)
        and any(p.get("name") == "Idempotency-Key" for p in operation.get("parameters", []))
    }
    assert wrapped == documented
    assert ("/v1/holds", "post") in wrapped


def test_openapi_declares_security_for_every_v1_operation(server: ServerThread) -> None:
    with server.client() as http:
        document = http.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    v1 = [
        (path, method, op)
        for path, item in document["paths"].items()
        if path.startswith("/v1/") and path != "/v1/receipt-keys"
        for method, op in item.items()
        if method in {"get", "put", "post", "patch", "delete"}
    ]
    assert v1
    for path, method, op in v1:
        assert op.get("security"), (path, method)
        for requirement in op["security"]:
            assert set(requirement) <= set(schemes), (path, method)


def test_openapi_documents_the_contract_page_size(server: ServerThread) -> None:
    # API.md, Conventions: "Lists take limit (default 50, max 500)".
    with server.client() as http:
        document = http.get("/openapi.json").json()
    params = document["paths"]["/v1/access-log"]["get"]["parameters"]
    limit = next(p for p in params if p["name"] == "limit")
    assert limit["schema"].get("maximum") == 500
    assert "subject_ref" in {p["name"] for p in params}


def test_docs_page_is_html_mentioning_every_path(server: ServerThread) -> None:
    with server.client() as http:
        response = http.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text.lower()
    for path, _method in _route_table():
        assert path in response.text, path
