"""The client covers every tenant-facing operation a running vault describes in its
/openapi.json: an operation added to the vault without one in the client fails here."""

from __future__ import annotations

from datavault_client._routes import all_operations
from tests.support import ServerThread

# Not for tenants' code: probes and metrics for the operator, the API's own description,
# and the playback URL a browser opens (the client mints it: `artefacts.link`).
NOT_TENANT_OPERATIONS = {
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"),
    ("GET", "/openapi.json"), ("GET", "/docs"),
    ("GET", "/playback/{token}"), ("HEAD", "/playback/{token}"),
}  # fmt: skip


def test_every_operation_of_the_api_has_one_in_the_client(server: ServerThread) -> None:
    with server.client() as http:
        document = http.get("/openapi.json").json()
    described = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "head", "post", "put", "patch", "delete")
    }
    in_client = {(op.method, op.template) for op in all_operations()}
    assert described - NOT_TENANT_OPERATIONS - in_client == set()
    assert in_client - described == set()  # nothing the vault does not offer
