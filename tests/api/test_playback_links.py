"""Playback links (API.md "Playback links"): minted under the read scope, used without an
Authorization header; Range and HEAD as on …/content; at most an hour; dead after expiry,
the artefact's deletion, the subject's erasure or restriction, and the minting key's
revocation; every use in the access log under the minting key with the client's IP; the
URL names neither the subject nor the artefact, is unguessable, and reaches nothing else."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.helpers import (
    access_log,
    artefact_url,
    auth,
    create_key,
    data_keys,
    from_ip,
    parse_time,
    subject_url,
    uploaded,
)
from tests.jobs import run_worker_pass
from tests.support import ServerThread, Tenant, make_tenant, private_server, problem
from vault.runtime import operator_context
from workers.sweeper import sweep

# Behind a proxy that serves the vault under a path: links name this base, not the
# vault's own address, and the proxy strips the prefix.
PUBLIC_URL = "https://media.example.test/vault"
LINK_ROUTE = "/playback/{token}"
DEAD = "no such link, or it is no longer valid"
DATA = bytes(range(256)) * 100  # 25,600 bytes
THROTTLE_LIMIT = 5


@pytest.fixture(scope="module")
def vault(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with private_server(
        pg_admin_url,
        tmp_path_factory.mktemp("playback"),
        public_url=PUBLIC_URL,
        trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),),
        auth_failure_limit=THROTTLE_LIMIT,
    ) as server:
        yield server


@pytest.fixture
def own_tenant(vault: ServerThread) -> Tenant:
    return make_tenant(vault.settings, vault.database_url)


@pytest.fixture
def http(vault: ServerThread) -> Iterator[httpx.Client]:
    with vault.client() as client:
        yield client


def _ref() -> str:
    # A reference a leak would show: a slash, a space and an @.
    return f"caller/{uuid.uuid4().hex[:8]} x@example.org"


def _stored(http: httpx.Client, tenant: Tenant, ref: str, data: bytes = DATA) -> Any:
    keys = data_keys(http, tenant)
    artefact = uploaded(
        http, keys.ingest, ref, data, content_type="video/webm", filename="call 7.webm"
    )
    return keys, artefact


def _mint(
    http: httpx.Client, key: dict[str, Any], ref: str, artefact_id: str, **body: Any
) -> httpx.Response:
    url = artefact_url(ref, artefact_id, "links")
    if body:
        return http.post(url, json=body, headers=auth(key))
    return http.post(url, headers=auth(key))


def _minted(http: httpx.Client, key: dict[str, Any], ref: str, artefact_id: str) -> str:
    answer = _mint(http, key, ref, artefact_id)
    assert answer.status_code == 201, answer.text
    return _local(answer.json()["url"])


def _local(url: str) -> str:
    """The path the vault serves a link's URL at (the proxy strips PUBLIC_URL's path)."""
    assert url.startswith(PUBLIC_URL + "/playback/"), url
    return url.removeprefix(PUBLIC_URL)


def _token(path: str) -> str:
    return path.removeprefix("/playback/")


def _dead(answer: httpx.Response) -> None:
    assert answer.status_code == 404, answer.text
    if answer.request.method != "HEAD":
        assert problem(answer)["detail"] == DEAD


# --- minting ------------------------------------------------------------------------------


def test_minting_answers_an_unguessable_url_that_names_neither_subject_nor_artefact(
    http: httpx.Client, own_tenant: Tenant
) -> None:
    ref = _ref()
    keys, artefact = _stored(http, own_tenant, ref)
    before = datetime.now(UTC)
    answer = _mint(http, keys.read, ref, artefact["id"])
    assert answer.status_code == 201, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert set(body) == {"url", "expires_at"}
    assert body["expires_at"].endswith("Z")
    lifetime = parse_time(body["expires_at"]) - before
    assert timedelta(seconds=890) < lifetime < timedelta(seconds=930), lifetime
    token = _token(_local(body["url"]))
    assert token.startswith("dvp_") and len(token) == 4 + 43  # 256 random bits
    leaks = (ref, urllib.parse.quote(ref, safe=""), "caller", artefact["id"],
             str(own_tenant.id), artefact["subject_ref_hash"])  # fmt: skip
    for leak in leaks:
        assert leak not in body["url"]
    again = {_token(_minted(http, keys.read, ref, artefact["id"])) for _ in range(3)}
    assert len(again | {token}) == 4


def test_a_retried_mint_with_its_idempotency_key_is_one_link(
    http: httpx.Client, own_tenant: Tenant
) -> None:
    """A client that lost the answer asks again with the same Idempotency-Key: the same
    link, still marked for no cache, and no second credential."""
    ref = _ref()
    keys, artefact = _stored(http, own_tenant, ref)
    url = artefact_url(ref, artefact["id"], "links")
    once = {**auth(keys.read), "Idempotency-Key": f"mint-{uuid.uuid4().hex}"}
    first = http.post(url, json={"expires_in": 600}, headers=once)
    again = http.post(url, json={"expires_in": 600}, headers=once)
    assert first.status_code == again.status_code == 201, again.text
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["cache-control"] == "no-store"
    other = http.post(url, json={"expires_in": 900}, headers=once)
    assert other.status_code == 422
    assert problem(other)["errors"][0]["field"] == "Idempotency-Key"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"expires_in": 3600}, 201),
        ({"expires_in": 1}, 201),
        ({"expires_in": None}, 201),
        ({"expires_in": 3601}, 422),
        ({"expires_in": 0}, 422),
        ({"expires_in": -60}, 422),
        ({"expires_in": 90.5}, 422),
        ({"expires_in": "900"}, 422),
        ({"expires_in": True}, 422),
        ({"expires_in": 900, "scope": "compliance"}, 422),
    ],
)
def test_lifetime_is_at_most_an_hour(
    http: httpx.Client, own_tenant: Tenant, body: dict[str, Any], status: int
) -> None:
    ref = _ref()
    keys, artefact = _stored(http, own_tenant, ref, b"x")
    before = datetime.now(UTC)
    answer = http.post(
        artefact_url(ref, artefact["id"], "links"), json=body, headers=auth(keys.read)
    )
    assert answer.status_code == status, answer.text
    if status == 422:
        fields = {e["field"] for e in problem(answer)["errors"]}
        assert fields == ({"scope"} if "scope" in body else {"expires_in"})
        return
    expected = body["expires_in"] or 900
    lifetime = parse_time(answer.json()["expires_at"]) - before
    assert abs(lifetime.total_seconds() - expected) < 30, lifetime


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [(b"{", "application/json", 400), (b"[]", "application/json", 422),
     (b"expires_in=60", "application/x-www-form-urlencoded", 415)],
)  # fmt: skip
def test_a_bad_minting_body_is_a_problem(
    http: httpx.Client, own_tenant: Tenant, content: bytes, content_type: str, status: int
) -> None:
    ref = _ref()
    keys, artefact = _stored(http, own_tenant, ref, b"x")
    answer = http.post(
        artefact_url(ref, artefact["id"], "links"),
        content=content,
        headers={**auth(keys.read), "Content-Type": content_type},
    )
    assert answer.status_code == status, answer.text
    problem(answer)


def test_only_read_and_compliance_keys_mint(http: httpx.Client, own_tenant: Tenant) -> None:
    ref = _ref()
    keys, artefact = _stored(http, own_tenant, ref, b"x")
    erasure = create_key(http, own_tenant, ["erasure"])
    statuses = {
        name: _mint(http, key, ref, artefact["id"]).status_code
        for name, key in [("read", keys.read), ("compliance", keys.compliance),
                          ("ingest", keys.ingest), ("erasure", erasure), ("admin", keys.admin)]
    }  # fmt: skip
    assert statuses == {"read": 201, "compliance": 201, "ingest": 403, "erasure": 403,
                        "admin": 403}  # fmt: skip
    anonymous = http.post(artefact_url(ref, artefact["id"], "links"))
    assert anonymous.status_code == 401


def test_no_link_to_restricted_data_whatever_scope_mints_it(
    http: httpx.Client, own_tenant: Tenant
) -> None:
    """A link reads as the read scope does: a compliance key reads a restricted subject,
    but may not hand that to a browser through a link."""
    ref = _ref()
    keys, artefact = _stored(http, own_tenant, ref, b"x")
    restricted = http.post(
        subject_url(ref, "restriction"), json={"reason": "contested"}, headers=auth(keys.compliance)
    )
    assert restricted.status_code in (200, 201), restricted.text
    for key in (keys.compliance, keys.read):
        refused = _mint(http, key, ref, artefact["id"])
        assert refused.status_code == 403
        assert problem(refused)["type"].endswith("/restricted")


# --- using ---------------------------------------------------------------------------------


def _same_answer(link: httpx.Response, direct: httpx.Response) -> None:
    assert link.status_code == direct.status_code
    if link.status_code == 416:  # a problem: the same but for its request id
        assert {**link.json(), "request_id": None} == {**direct.json(), "request_id": None}
    else:
        assert link.content == direct.content
    for name in ("content-type", "content-length", "etag", "accept-ranges", "cache-control",
                 "content-disposition", "x-content-type-options", "content-range"):  # fmt: skip
        assert link.headers.get(name) == direct.headers.get(name), name


@pytest.mark.parametrize(
    ("method", "range_header", "status"),
    [
        ("GET", None, 200),
        ("GET", "bytes=100-199", 206),
        ("GET", "bytes=25000-", 206),
        ("GET", "bytes=-10", 206),
        ("GET", "bytes=0-0", 206),
        ("GET", f"bytes={len(DATA)}-", 416),
        ("HEAD", None, 200),
        ("HEAD", "bytes=5-9", 206),
    ],
)
def test_a_link_serves_the_content_exactly_as_content_does(
    http: httpx.Client, own_tenant: Tenant, method: str, range_header: str | None, status: int
) -> None:
    ref = _ref()
    keys, artefact = _stored(http, own_tenant, ref)
    path = _minted(http, keys.read, ref, artefact["id"])
    ranged = {"Range": range_header} if range_header else {}
    link = http.request(method, path, headers=ranged)  # no Authorization header
    direct = http.request(
        method, artefact_url(ref, artefact["id"], "content"), headers={**auth(keys.read), **ranged}
    )
    assert link.status_code == status, link.text
    _same_answer(link, direct)
    if status == 200 and method == "GET":
        assert link.content == DATA
        assert link.headers["content-type"] == "video/webm"
        assert link.headers["etag"] == f'"{artefact["id"]}"'
    if range_header == "bytes=100-199":
        assert link.content == DATA[100:200]
        assert link.headers["content-range"] == f"bytes 100-199/{len(DATA)}"
    if status == 416:
        assert link.headers["content-range"] == f"bytes */{len(DATA)}"
    # Nothing in the answer names the subject.
    assert ref not in str(link.headers) and urllib.parse.quote(ref, safe="") not in str(
        link.headers
    )


def test_a_link_to_active_content_is_inert_on_the_vaults_origin(
    http: httpx.Client, own_tenant: Tenant
) -> None:
    """An uploader-chosen JavaScript or HTML type, served through a link whose URL is the
    vault's origin (the console's): a download, never sniffed, and sandboxed with nothing
    allowed should a browser open it as a page or load it as a worker."""
    ref = _ref()
    keys = data_keys(http, own_tenant)
    for content_type, data in [
        ("application/javascript", b"navigator.serviceWorker && fetch('/v1/subjects')"),
        ("text/html", b"<script>document.cookie</script>"),
    ]:
        artefact = uploaded(http, keys.ingest, ref, data, content_type=content_type)
        path = _minted(http, keys.read, ref, artefact["id"])
        for method in ("GET", "HEAD"):
            served = http.request(method, path)
            assert served.status_code == 200, served.text
            assert served.headers["content-type"].startswith(content_type)
            assert served.headers["content-disposition"] == "attachment"
            assert served.headers["x-content-type-options"] == "nosniff"
            assert served.headers["content-security-policy"] == "default-src 'none'; sandbox"


def test_an_expired_link_is_dead(http: httpx.Client, own_tenant: Tenant) -> None:
    ref = _ref()
    keys, artefact = _stored(http, own_tenant, ref, b"short-lived")
    answer = _mint(http, keys.read, ref, artefact["id"], expires_in=1)
    assert answer.status_code == 201, answer.text
    path = _local(answer.json()["url"])
    assert http.get(path).content == b"short-lived"
    expires_at = parse_time(answer.json()["expires_at"])
    time.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 0.5)
    _dead(http.get(path))
    _dead(http.head(path))


def test_revoking_the_minting_key_kills_its_links_and_only_its_links(
    http: httpx.Client, own_tenant: Tenant
) -> None:
    ref = _ref()
    keys, artefact = _stored(http, own_tenant, ref)
    player = create_key(http, own_tenant, ["read"])
    path = _minted(http, player, ref, artefact["id"])
    other = _minted(http, keys.read, ref, artefact["id"])
    assert http.get(path).status_code == 200
    assert http.delete(f"/v1/api-keys/{player['id']}", headers=own_tenant.auth()).status_code == 204
    _dead(http.get(path))
    _dead(http.get(path, headers={"Range": "bytes=0-9"}))
    _dead(http.head(path))
    assert http.get(other).content == DATA


def test_deleting_the_artefact_kills_its_links(http: httpx.Client, own_tenant: Tenant) -> None:
    ref = _ref()
    keys, artefact = _stored(http, own_tenant, ref)
    path = _minted(http, keys.read, ref, artefact["id"])
    deleted = http.delete(artefact_url(ref, artefact["id"]), headers=auth(keys.ingest))
    assert deleted.status_code == 204
    _dead(http.get(path))  # not 410: a link's holder learns nothing of what happened


def test_restriction_kills_the_subjects_links_for_good(
    http: httpx.Client, own_tenant: Tenant
) -> None:
    ref = _ref()
    keys, artefact = _stored(http, own_tenant, ref)
    path = _minted(http, keys.read, ref, artefact["id"])
    url = subject_url(ref, "restriction")
    assert http.post(url, json={"reason": "objection"}, headers=auth(keys.compliance)).is_success
    _dead(http.get(path))
    assert http.delete(url, headers=auth(keys.compliance)).is_success
    _dead(http.get(path))  # lifting the restriction does not revive it
    assert http.get(_minted(http, keys.read, ref, artefact["id"])).content == DATA


def test_erasure_kills_the_subjects_links(
    vault: ServerThread, http: httpx.Client, own_tenant: Tenant
) -> None:
    ref = _ref()
    keys, artefact = _stored(http, own_tenant, ref)
    path = _minted(http, keys.read, ref, artefact["id"])
    privacy = create_key(http, own_tenant, ["erasure"])
    assert http.post(subject_url(ref, "erasure"), headers=auth(privacy)).status_code == 202
    run_worker_pass(vault)
    _dead(http.get(path))
    _dead(http.head(path))


# --- reaching nothing else -------------------------------------------------------------------


def test_a_link_reaches_its_artefact_and_nothing_else(
    vault: ServerThread, http: httpx.Client, own_tenant: Tenant
) -> None:
    ref = _ref()
    keys, artefact = _stored(http, own_tenant, ref)
    sibling = uploaded(http, keys.ingest, ref, b"the other recording")
    path = _minted(http, keys.read, ref, artefact["id"])
    token = _token(path)
    assert http.get(path).content == DATA
    # The token is no API key, and a changed or extended token is no link. (From an
    # address of their own: these are failed attempts, which the throttle counts.)
    prober = from_ip(f"192.0.2.{uuid.uuid4().int % 200 + 1}")
    as_key = {**prober, "Authorization": f"Bearer {token}"}
    assert http.get(artefact_url(ref, sibling["id"], "content"), headers=as_key).status_code == 401
    assert http.get(artefact_url(ref, artefact["id"], "content"), headers=as_key).status_code == 401
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    for probe in (flipped, token[:-1], token.upper()):
        _dead(http.get(f"/playback/{probe}", headers=prober))
    prober = from_ip(f"192.0.2.{uuid.uuid4().int % 200 + 1}")
    for probe in (token + "A", token.replace("dvp_", "dv_")):
        _dead(http.get(f"/playback/{probe}", headers=prober))
    for probe in (f"{path}/{sibling['id']}", f"{path}?artefact_id={sibling['id']}"):
        answer = http.get(probe)
        assert answer.status_code == 404 or answer.content == DATA, probe
        assert b"the other recording" not in answer.content

    # Another tenant's key mints nothing for this artefact, by its id or any reference.
    other = make_tenant(vault.settings, vault.database_url)
    intruder = create_key(http, other, ["read", "compliance"])
    assert _mint(http, intruder, ref, artefact["id"]).status_code == 404
    # Nor does a key of this tenant with another subject's reference.
    elsewhere = _ref()
    uploaded(http, keys.ingest, elsewhere, b"y")
    assert _mint(http, keys.read, elsewhere, artefact["id"]).status_code == 404


def test_the_token_is_stored_only_as_its_hash_and_never_logged(
    vault: ServerThread, http: httpx.Client, own_tenant: Tenant, capfd: pytest.CaptureFixture[str]
) -> None:
    ref = _ref()
    keys, artefact = _stored(http, own_tenant, ref, b"x")
    path = _minted(http, keys.read, ref, artefact["id"])
    token = _token(path)
    assert http.get(path).status_code == 200
    assert http.get(path + "x").status_code == 404  # a refused one too
    # The vault's log lines (stdout) name the route template, never the token.
    logged = capfd.readouterr().out
    assert "/playback/{token}" in logged
    assert token not in logged and token[4:20] not in logged

    async def everything() -> tuple[list[asyncpg.Record], str]:
        conn = await asyncpg.connect(vault.database_url)  # the owner: no row-level security
        try:
            rows = await conn.fetch("SELECT * FROM playback_links WHERE tenant_id = $1",
                                    own_tenant.id)  # fmt: skip
            dump = await conn.fetchval(
                "SELECT string_agg(t::text, ' ') FROM (SELECT * FROM access_log) t"
            )
            return list(rows), dump
        finally:
            await conn.close()

    rows, access_rows = asyncio.run(everything())
    (row,) = [r for r in rows if bytes(r["token_hash"]) == hashlib.sha256(token.encode()).digest()]
    stored = " ".join(str(v) for v in row.values()) + repr(bytes(row["token_hash"]))
    assert token not in stored and token[4:] not in stored
    assert token not in access_rows and "/playback/{token}" in access_rows


# --- the access log ------------------------------------------------------------------------


def test_every_use_is_logged_under_the_minting_key_with_the_clients_ip(
    http: httpx.Client, own_tenant: Tenant
) -> None:
    ref = _ref()
    keys, artefact = _stored(http, own_tenant, ref)
    player = create_key(http, own_tenant, ["read"])
    path = _minted(http, player, ref, artefact["id"])
    viewer = from_ip("203.0.113.77")  # the browser, not the application that minted it
    uses = [
        http.get(path, headers=viewer),
        http.get(path, headers={**viewer, "Range": "bytes=1000-1999"}),
        http.head(path, headers=viewer),
    ]
    assert [u.status_code for u in uses] == [200, 206, 200]
    assert http.delete(f"/v1/api-keys/{player['id']}", headers=own_tenant.auth()).is_success
    late = http.get(path, headers=viewer)
    _dead(late)

    rows = access_log(http, keys.compliance, api_key_id=player["id"], ip="203.0.113.77")
    by_request = {r["request_id"]: r for r in rows}
    # One row each: the seek's, logged while its range was opened, is its only row.
    assert len(rows) == len(by_request)
    for used in [*uses, late]:
        row = by_request[used.headers["x-request-id"]]
        assert row["route"] == LINK_ROUTE
        assert row["status"] == used.status_code
        assert row["artefact_id"] == artefact["id"]
        assert row["subject_ref_hash"] == artefact["subject_ref_hash"]
        assert row["ip"] == "203.0.113.77"
    assert by_request[uses[0].headers["x-request-id"]]["bytes_out"] >= len(DATA)
    # The mint is in the log too, from the application's address.
    mints = access_log(http, keys.compliance, api_key_id=player["id"], ip="127.0.0.1")
    assert [r["route"] for r in mints] == ["/v1/subjects/{ref}/artefacts/{artefact_id}/links"]
    # Searching by the subject finds the uses as well.
    about = access_log(http, keys.compliance, subject_ref=ref, ip="203.0.113.77")
    assert {r["request_id"] for r in about} >= {u.headers["x-request-id"] for u in uses}


def test_tokens_that_name_no_link_are_throttled_like_wrong_keys(
    http: httpx.Client, own_tenant: Tenant
) -> None:
    ref = _ref()
    keys, artefact = _stored(http, own_tenant, ref, b"x")
    path = _minted(http, keys.read, ref, artefact["id"])
    guesser = from_ip(f"198.51.100.{uuid.uuid4().int % 200 + 1}")
    for _ in range(THROTTLE_LIMIT):
        _dead(http.get(f"/playback/dvp_{'A' * 43}", headers=guesser))
    refused = http.get(f"/playback/dvp_{'B' * 43}", headers=guesser)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    # A valid link is never refused by the throttle.
    assert http.get(path, headers=guesser).status_code == 200


def test_the_sweeper_removes_expired_links(vault: ServerThread, own_tenant: Tenant) -> None:
    with vault.client() as http:
        ref = _ref()
        keys, artefact = _stored(http, own_tenant, ref, b"x")
        path = _minted(http, keys.read, ref, artefact["id"])

    async def sweep_at(now: datetime) -> int:
        async with operator_context(vault.settings, vault.database_url) as ctx:
            report = await sweep(ctx.db, ctx.blobs, ctx.keyring, now=now)
        return report.playback_links_deleted

    asyncio.run(sweep_at(datetime.now(UTC)))
    with vault.client() as http:
        assert http.get(path).status_code == 200  # not expired: kept
    # The sweep an hour on (the most a link lives) removes it: the link is gone, though
    # the database's clock would still have let it live.
    assert asyncio.run(sweep_at(datetime.now(UTC) + timedelta(seconds=3601))) >= 1
    with vault.client() as http:
        _dead(http.get(path))
