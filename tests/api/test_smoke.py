from tests.support import ServerThread, Tenant


def test_admin_key_lists_its_own_keys(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        response = http.get("/v1/api-keys", headers=tenant.auth())
    assert response.status_code == 200
    assert [k["name"] for k in response.json()["items"]] == ["first admin key"]
