"""/v1/webhooks over HTTP: registration and its limits at their edges, the secret shown
once and stored only wrapped, scopes, destinations refused, another tenant's endpoints
and deliveries answering 404. No delivery job runs in this module (the vaults have their
jobs off and no test here runs a pass): nothing is ever sent anywhere."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.helpers import auth, create_key
from tests.support import ServerThread, Tenant, make_tenant, private_server, problem
from tests.webhook_receiver import unused_port
from vault.domain.webhooks import MAX_DESCRIPTION_LENGTH, MAX_URL_LENGTH, MAX_WEBHOOKS_PER_TENANT

EVENTS = ["erasure.completed", "erasure.held"]


@pytest.fixture(scope="module")
def vault(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """Private networks allowed: receivers on 127.0.0.1, as in a test or an internal
    deployment."""
    with private_server(
        pg_admin_url, tmp_path_factory.mktemp("webhooks-api"), webhook_allow_private_networks=True
    ) as server:
        yield server


@pytest.fixture(scope="module")
def strict_vault(
    pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    """The default: webhooks reach public addresses only."""
    with private_server(pg_admin_url, tmp_path_factory.mktemp("webhooks-strict")) as server:
        yield server


def _tenant(server: ServerThread) -> Tenant:
    return make_tenant(server.settings, server.database_url)


def _url(path: str = "/hook") -> str:
    return f"http://127.0.0.1:{unused_port()}{path}"


def _create(http: httpx.Client, tenant: Tenant, **fields: Any) -> httpx.Response:
    body = {"url": _url(), "events": EVENTS, **fields}
    return http.post("/v1/webhooks", json=body, headers=tenant.auth())


def _created(http: httpx.Client, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    response = _create(http, tenant, **fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _stored_endpoint(server: ServerThread, endpoint_id: str) -> asyncpg.Record:
    async def read() -> asyncpg.Record:
        conn = await asyncpg.connect(server.database_url)
        try:
            row = await conn.fetchrow(
                "SELECT * FROM webhook_endpoints WHERE id = $1", uuid.UUID(endpoint_id)
            )
            assert row is not None
            return row
        finally:
            await conn.close()

    return asyncio.run(read())


# --- create, read, delete --------------------------------------------------------------


def test_create_answers_201_with_the_secret_once_then_never_again(vault: ServerThread) -> None:
    tenant = _tenant(vault)
    url = _url("/in?source=datavault")
    with vault.client() as http:
        response = _create(http, tenant, url=url, description="billing system")
        assert response.status_code == 201, response.text
        created = response.json()
        listed = http.get("/v1/webhooks", headers=tenant.auth()).json()
        shown = http.get(f"/v1/webhooks/{created['id']}", headers=tenant.auth())
    assert set(created) == {"id", "url", "events", "description", "secret", "created_at"}
    assert (created["url"], created["events"], created["description"]) == (
        url, EVENTS, "billing system",
    )  # fmt: skip
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) == 32
    assert response.headers["Location"] == f"/v1/webhooks/{created['id']}"
    assert response.headers["Cache-Control"] == "no-store"
    assert listed["items"] == [{k: v for k, v in created.items() if k != "secret"}]
    assert listed["next_cursor"] is None
    assert shown.status_code == 200 and "secret" not in shown.json()
    assert created["secret"] not in str(listed) + shown.text


def test_the_secret_is_stored_only_wrapped(vault: ServerThread) -> None:
    tenant = _tenant(vault)
    with vault.client() as http:
        created = _created(http, tenant)
    raw = base64.b64decode(created["secret"].removeprefix("whsec_"))
    row = _stored_endpoint(vault, created["id"])
    wrapped = bytes(row["secret_wrapped"])
    assert raw not in wrapped and created["secret"].encode() not in wrapped
    assert wrapped[0] == 0xA1 and len(wrapped) == 1 + 32 + 12 + 32 + 16  # crypto/FORMAT.md
    assert row["kek_version"] == 1


def test_delete_answers_204_destroys_the_secret_and_then_404(vault: ServerThread) -> None:
    tenant = _tenant(vault)
    with vault.client() as http:
        created = _created(http, tenant)
        path = f"/v1/webhooks/{created['id']}"
        deleted = http.delete(path, headers=tenant.auth())
        again = http.delete(path, headers=tenant.auth())
        shown = http.get(path, headers=tenant.auth())
        tested = http.post(f"{path}/test", headers=tenant.auth())
        deliveries = http.get(f"{path}/deliveries", headers=tenant.auth())
        listed = http.get("/v1/webhooks", headers=tenant.auth()).json()
    assert deleted.status_code == 204
    assert [r.status_code for r in (again, shown, tested, deliveries)] == [404] * 4
    assert listed["items"] == []
    assert _stored_endpoint(vault, created["id"])["secret_wrapped"] is None


def test_test_event_is_queued_as_a_pending_delivery(vault: ServerThread) -> None:
    tenant = _tenant(vault)
    with vault.client() as http:
        created = _created(http, tenant)
        queued = http.post(f"/v1/webhooks/{created['id']}/test", headers=tenant.auth())
        log = http.get(f"/v1/webhooks/{created['id']}/deliveries", headers=tenant.auth())
    assert queued.status_code == 202, queued.text
    delivery = queued.json()
    assert (delivery["type"], delivery["status"], delivery["attempt_count"]) == (
        "webhook.test", "pending", 0,
    )  # fmt: skip
    assert delivery["attempts"] == [] and delivery["response_code"] is None
    assert log.json()["items"] == [delivery]


def test_idempotency_key_replays_the_first_answer_and_creates_one_endpoint(
    vault: ServerThread,
) -> None:
    tenant = _tenant(vault)
    body = {"url": _url(), "events": EVENTS}
    headers = {**tenant.auth(), "Idempotency-Key": "create-hook-1"}
    with vault.client() as http:
        first = http.post("/v1/webhooks", json=body, headers=headers)
        second = http.post("/v1/webhooks", json=body, headers=headers)
        other = http.post("/v1/webhooks", json={**body, "events": ["hold.expired"]},
                          headers=headers)  # fmt: skip
        listed = http.get("/v1/webhooks", headers=tenant.auth()).json()
    assert (first.status_code, second.status_code, other.status_code) == (201, 201, 422)
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert len(listed["items"]) == 1


def test_list_pages_newest_first(vault: ServerThread) -> None:
    tenant = _tenant(vault)
    with vault.client() as http:
        ids = [_created(http, tenant)["id"] for _ in range(3)]
        first = http.get("/v1/webhooks", params={"limit": 2}, headers=tenant.auth()).json()
        rest = http.get("/v1/webhooks", params={"cursor": first["next_cursor"]},
                        headers=tenant.auth()).json()  # fmt: skip
        bad = http.get("/v1/webhooks", params={"limit": 501}, headers=tenant.auth())
    assert [w["id"] for w in first["items"] + rest["items"]] == ids[::-1]
    assert rest["next_cursor"] is None
    assert problem(bad)["status"] == 422


# --- limits at their edges -------------------------------------------------------------


def test_at_most_20_endpoints_per_tenant_and_a_deleted_one_frees_its_place(
    vault: ServerThread,
) -> None:
    tenant = _tenant(vault)
    with vault.client() as http:
        made = [_created(http, tenant)["id"] for _ in range(MAX_WEBHOOKS_PER_TENANT)]
        refused = _create(http, tenant)
        http.delete(f"/v1/webhooks/{made[0]}", headers=tenant.auth())
        after_delete = _create(http, tenant)
    assert problem(refused)["status"] == 409
    assert str(MAX_WEBHOOKS_PER_TENANT) in problem(refused)["detail"]
    assert after_delete.status_code == 201, after_delete.text


def test_url_of_2048_characters_is_accepted_and_2049_refused(vault: ServerThread) -> None:
    tenant = _tenant(vault)
    start = f"http://127.0.0.1:{unused_port()}/"
    with vault.client() as http:
        fits = _create(http, tenant, url=start + "a" * (MAX_URL_LENGTH - len(start)))
        over = _create(http, tenant, url=start + "a" * (MAX_URL_LENGTH + 1 - len(start)))
    assert fits.status_code == 201, fits.text
    assert len(fits.json()["url"]) == MAX_URL_LENGTH
    assert problem(over)["status"] == 422
    assert problem(over)["errors"][0]["field"] == "url"


def test_description_of_500_characters_is_accepted_and_501_refused(vault: ServerThread) -> None:
    tenant = _tenant(vault)
    with vault.client() as http:
        fits = _create(http, tenant, description="d" * MAX_DESCRIPTION_LENGTH)
        over = _create(http, tenant, description="d" * (MAX_DESCRIPTION_LENGTH + 1))
    assert fits.status_code == 201
    assert problem(over)["errors"][0]["field"] == "description"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"url": None}, "url"),
        ({"url": 7}, "url"),
        ({"url": "ftp://127.0.0.1/"}, "url"),
        ({"url": "http://user:pw@127.0.0.1/"}, "url"),
        ({"url": "http://127.0.0.1/#frag"}, "url"),
        ({"events": []}, "events"),
        ({"events": ["erasure.shredded"]}, "events"),
        ({"events": "erasure.held"}, "events"),
        ({"description": 5}, "description"),
        ({"secret": "whsec_mine"}, "secret"),
    ],
)
def test_bad_fields_are_422_naming_the_field(
    vault: ServerThread, fields: dict[str, Any], field: str
) -> None:
    tenant = _tenant(vault)
    with vault.client() as http:
        answered = _create(http, tenant, **fields)
    body = problem(answered)
    assert body["status"] == 422
    assert body["errors"][0]["field"] == field


def test_a_body_that_is_not_json_is_refused(vault: ServerThread) -> None:
    tenant = _tenant(vault)
    with vault.client() as http:
        not_json = http.post("/v1/webhooks", content=b"{", headers={
            **tenant.auth(), "Content-Type": "application/json"})  # fmt: skip
        form = http.post("/v1/webhooks", content=b"url=x", headers={
            **tenant.auth(), "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        huge = http.post("/v1/webhooks", json={"url": "x" * 70_000}, headers=tenant.auth())
    assert [problem(r)["status"] for r in (not_json, form, huge)] == [400, 415, 413]


def test_deliveries_filters_and_paging_are_checked(vault: ServerThread) -> None:
    tenant = _tenant(vault)
    with vault.client() as http:
        created = _created(http, tenant)
        path = f"/v1/webhooks/{created['id']}/deliveries"
        answers = [
            http.get(path, params=params, headers=tenant.auth())
            for params in ({"status": "lost"}, {"limit": 0}, {"limit": 501}, {"cursor": "nope"},
                           {"since": "2026-01-01T00:00:00Z"})
        ]  # fmt: skip
        fine = http.get(path, params={"status": "pending", "limit": 500}, headers=tenant.auth())
        malformed = http.get("/v1/webhooks/not-a-uuid/deliveries", headers=tenant.auth())
        retry = http.post(f"{path}/{uuid.uuid4()}/retry", headers=tenant.auth())
    assert [problem(r)["status"] for r in answers] == [422] * 5
    assert fine.status_code == 200 and fine.json() == {"items": [], "next_cursor": None}
    assert problem(malformed)["status"] == 404
    assert problem(retry)["status"] == 404


# --- scopes and tenants ----------------------------------------------------------------


@pytest.mark.parametrize("scope", ["ingest", "read", "erasure", "compliance"])
def test_only_the_admin_scope_manages_webhooks(vault: ServerThread, scope: str) -> None:
    tenant = _tenant(vault)
    with vault.client() as http:
        created = _created(http, tenant)
        key = create_key(http, tenant, [scope])
        path = f"/v1/webhooks/{created['id']}"
        answers = [
            http.post("/v1/webhooks", json={"url": _url(), "events": EVENTS}, headers=auth(key)),
            http.get("/v1/webhooks", headers=auth(key)),
            http.get(path, headers=auth(key)),
            http.delete(path, headers=auth(key)),
            http.post(f"{path}/test", headers=auth(key)),
            http.get(f"{path}/deliveries", headers=auth(key)),
        ]
        still_there = http.get(path, headers=tenant.auth())
    assert [problem(r)["status"] for r in answers] == [403] * len(answers)
    assert still_there.status_code == 200


def test_another_tenants_endpoints_and_deliveries_answer_404_and_stay_untouched(
    vault: ServerThread,
) -> None:
    owner, other = _tenant(vault), _tenant(vault)
    with vault.client() as http:
        created = _created(http, owner)
        delivery = http.post(f"/v1/webhooks/{created['id']}/test", headers=owner.auth()).json()
        path = f"/v1/webhooks/{created['id']}"
        answers = [
            http.get(path, headers=other.auth()),
            http.delete(path, headers=other.auth()),
            http.post(f"{path}/test", headers=other.auth()),
            http.get(f"{path}/deliveries", headers=other.auth()),
            http.post(f"{path}/deliveries/{delivery['id']}/retry", headers=other.auth()),
        ]
        listed = http.get("/v1/webhooks", headers=other.auth()).json()
        own = http.get(f"{path}/deliveries", headers=owner.auth()).json()
    assert [problem(r)["status"] for r in answers] == [404] * len(answers)
    assert listed["items"] == []
    assert [d["id"] for d in own["items"]] == [delivery["id"]]


def test_a_delivery_of_another_endpoint_of_the_same_tenant_is_404(vault: ServerThread) -> None:
    tenant = _tenant(vault)
    with vault.client() as http:
        first, second = _created(http, tenant), _created(http, tenant)
        delivery = http.post(f"/v1/webhooks/{first['id']}/test", headers=tenant.auth()).json()
        crossed = http.post(
            f"/v1/webhooks/{second['id']}/deliveries/{delivery['id']}/retry", headers=tenant.auth()
        )
    assert problem(crossed)["status"] == 404


# --- destinations a strict deployment refuses --------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook", "https://127.1/hook", "https://2130706433/hook",
        "https://localhost/hook", "https://10.0.0.1/hook", "https://172.16.5.4/hook",
        "https://192.168.0.10/hook", "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/hook", "https://0.0.0.0/hook", "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook", "https://[fe80::1]/hook", "https://[fd00::1]/hook",
        "https://[64:ff9b::a9fe:a9fe]/hook",
    ],
)  # fmt: skip
def test_private_loopback_and_link_local_destinations_are_refused_at_registration(
    strict_vault: ServerThread, url: str
) -> None:
    tenant = _tenant(strict_vault)
    with strict_vault.client() as http:
        answered = http.post("/v1/webhooks", json={"url": url, "events": EVENTS},
                             headers=tenant.auth())  # fmt: skip
        listed = http.get("/v1/webhooks", headers=tenant.auth()).json()
    body = problem(answered)
    assert body["status"] == 422 and body["errors"][0]["field"] == "url"
    assert listed["items"] == []


def test_plain_http_is_refused_where_private_networks_are_not_allowed(
    strict_vault: ServerThread,
) -> None:
    tenant = _tenant(strict_vault)
    with strict_vault.client() as http:
        body = {"url": "http://93.184.216.34/hook", "events": EVENTS}
        answered = http.post("/v1/webhooks", json=body, headers=tenant.auth())
    assert problem(answered)["status"] == 422
    assert "https" in problem(answered)["detail"]


def test_a_public_https_destination_is_accepted(strict_vault: ServerThread) -> None:
    # Registration only: this module never runs the delivery job, so nothing is sent.
    tenant = _tenant(strict_vault)
    with strict_vault.client() as http:
        body = {"url": "https://93.184.216.34:8443/hook", "events": EVENTS}
        answered = http.post("/v1/webhooks", json=body, headers=tenant.auth())
    assert answered.status_code == 201, answered.text


# --- the API description says what the code answers ---------------------------------------


def test_answers_match_their_openapi_schemas(vault: ServerThread) -> None:
    from jsonschema import Draft202012Validator

    tenant = _tenant(vault)
    with vault.client() as http:
        document = http.get("/openapi.json").json()
        created = _create(http, tenant)
        queued = http.post(f"/v1/webhooks/{created.json()['id']}/test", headers=tenant.auth())
        listed = http.get("/v1/webhooks", headers=tenant.auth())
    paths, schemas = document["paths"], document["components"]["schemas"]

    def model(response: dict[str, Any]) -> dict[str, Any]:
        ref = response["content"]["application/json"]["schema"]["$ref"]
        return {**schemas[ref.rsplit("/", 1)[1]], "components": document["components"]}

    answers = [
        (model(paths["/v1/webhooks"]["post"]["responses"]["201"]), created.json()),
        (model(paths["/v1/webhooks/{webhook_id}/test"]["post"]["responses"]["202"]), queued.json()),
        (model(paths["/v1/webhooks"]["get"]["responses"]["200"]), listed.json()),
    ]
    for schema, body in answers:
        Draft202012Validator(schema).validate(body)
        assert set(body) == set(schema["properties"]), set(body) ^ set(schema["properties"])
        assert set(body) == set(schema["required"]), set(body) ^ set(schema["required"])
    assert set(listed.json()["items"][0]) == set(schemas["Webhook"]["properties"])
