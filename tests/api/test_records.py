"""/v1/subjects/{ref}/records: small JSON values, created, replaced (the old value shredded),
read, listed and deleted (API.md "Records", "Scopes"; DESIGN.md "Deletion guarantees")."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from crypto._primitives import random_bytes
from crypto.records import RECORD_V1, _seal_record_with
from tests.api.helpers import (
    MIB,
    auth,
    data_keys,
    parse_time,
    put_record,
    record_url,
    subject_url,
)
from tests.support import ServerThread, Tenant, problem
from vault.config import Settings
from vault.runtime import operator_context
from vault.services.keyring import record_object

RECORD_FIELDS = {"name", "category", "version", "updated_at"}


def _ref() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


def _json_string_of_exactly(total: int) -> bytes:
    """A JSON document (one string) of exactly `total` bytes."""
    body = b'"' + b"a" * (total - 2) + b'"'
    assert len(body) == total
    return body


# --- create and read ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"email_verified": true, "plan": "pro", "seats": 3}',
        b'[1, 2, {"nested": ["deep", null]}]',
        b'"just a string"',
        b"42",
        b"-0.5e3",
        b"null",
        b"true",
        b'{"name": "Zo\xc3\xab \xe2\x82\xac", "emoji": "\\ud83d\\ude00"}',
        b'{\n  "pretty": [1,\n 2]\n}\n',
    ],
    ids=[
        "object",
        "array",
        "string",
        "integer",
        "float",
        "null",
        "boolean",
        "unicode",
        "pretty-printed",
    ],
)
def test_created_record_reads_back_exactly_as_stored(
    server: ServerThread, tenant: Tenant, body: bytes
) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        created = put_record(http, keys.ingest, ref, "profile", body)
        fetched = http.get(record_url(ref, "profile"), headers=auth(keys.read))
    assert created.status_code == 201, created.text
    meta = created.json()
    assert set(meta) >= RECORD_FIELDS, meta
    assert meta["name"] == "profile"
    assert meta["category"] == "account"
    assert meta["version"] == 1
    assert meta["updated_at"].endswith("Z")
    parse_time(meta["updated_at"])
    assert fetched.status_code == 200, fetched.text
    assert fetched.headers["Content-Type"].startswith("application/json")
    assert fetched.json() == json.loads(body)
    assert fetched.content == body


def test_json_content_type_with_charset_is_accepted(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        keys = data_keys(http, tenant)
        created = put_record(
            http,
            keys.ingest,
            _ref(),
            "prefs",
            b'{"a": 1}',
            content_type="application/json; charset=utf-8",
        )
    assert created.status_code == 201, created.text


@pytest.mark.parametrize("category", ["account", "billing", "support", "transcript", "recording"])
def test_record_in_each_built_in_category(
    server: ServerThread, tenant: Tenant, category: str
) -> None:
    with server.client() as http:
        keys = data_keys(http, tenant)
        created = put_record(http, keys.ingest, _ref(), "r", b"{}", category=category)
    assert created.status_code == 201, created.text
    assert created.json()["category"] == category


@pytest.mark.parametrize(
    "category", [None, "", "accounts", "Account"], ids=["missing", "empty", "unknown", "upper"]
)
def test_create_without_a_known_category_is_422_and_stores_nothing(
    server: ServerThread, tenant: Tenant, category: str | None
) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        refused = put_record(http, keys.ingest, ref, "profile", b"{}", category=category)
        fetched = http.get(record_url(ref, "profile"), headers=auth(keys.read))
    assert refused.status_code == 422, refused.text
    assert "category" in [e.get("field") for e in problem(refused).get("errors") or []]
    assert fetched.status_code == 404


def test_unknown_record_is_404(server: ServerThread, tenant: Tenant) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        assert put_record(http, keys.ingest, ref, "exists", b"1").status_code == 201
        missing = http.get(record_url(ref, "missing"), headers=auth(keys.read))
        deleted = http.delete(record_url(ref, "missing"), headers=auth(keys.ingest))
        unknown_subject = http.get(record_url(_ref(), "exists"), headers=auth(keys.read))
    for response in (missing, deleted, unknown_subject):
        assert response.status_code == 404, response.text
        problem(response)


# --- replace ------------------------------------------------------------------------------


def test_replace_is_200_increments_version_and_returns_only_the_new_value(
    server: ServerThread, tenant: Tenant
) -> None:
    ref = _ref()
    values = [b'{"email": "old-1@example.org"}', b'{"email": "old-2@example.org"}', b'"v3"']
    with server.client() as http:
        keys = data_keys(http, tenant)
        responses = [put_record(http, keys.ingest, ref, "contact", v) for v in values[:2]]
        # A replace may leave the category out (the record keeps its own).
        responses.append(put_record(http, keys.ingest, ref, "contact", values[2], category=None))
        fetched = http.get(record_url(ref, "contact"), headers=auth(keys.read))
        by_compliance = http.get(record_url(ref, "contact"), headers=auth(keys.compliance))
        listed = http.get(subject_url(ref, "records"), headers=auth(keys.read))
    assert [r.status_code for r in responses] == [201, 200, 200], [r.text for r in responses]
    assert [r.json()["version"] for r in responses] == [1, 2, 3]
    assert {r.json()["category"] for r in responses} == {"account"}
    times = [parse_time(r.json()["updated_at"]) for r in responses]
    assert times == sorted(times)
    assert fetched.content == b'"v3"'
    assert by_compliance.content == b'"v3"'
    for old in (b"old-1@example.org", b"old-2@example.org"):
        assert old not in fetched.content
        assert old not in by_compliance.content
        assert old not in listed.content
    assert listed.json()["items"] == [responses[-1].json()]


def test_replaced_version_is_shredded_in_the_database_not_just_hidden(
    server: ServerThread, tenant: Tenant, database_url: str
) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        for value in (b'{"email": "old@example.org"}', b'{"email": "new@example.org"}'):
            put_record(http, keys.ingest, ref, "contact", value)

    async def versions() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database_url)  # the owner, like a stolen dump
        try:
            return await conn.fetch(
                """SELECT r.version, r.value_sealed IS NOT NULL AS sealed,
                          k.wrapped_key IS NOT NULL AS key_alive
                     FROM records r JOIN data_keys k
                       ON k.tenant_id = r.tenant_id AND k.id = r.data_key_id
                    WHERE r.tenant_id = $1 AND r.name = 'contact' ORDER BY r.version""",
                tenant.id,
            )
        finally:
            await conn.close()

    rows = asyncio.run(versions())
    assert [tuple(row) for row in rows] == [(1, False, False), (2, True, True)]


def test_concurrent_writes_of_one_record_all_succeed_one_after_another(
    server: ServerThread, tenant: Tenant
) -> None:
    """Writers of one record queue: one creates it, each other replaces it, none fails."""
    ref = _ref()
    writers = 12
    with server.client() as http:
        keys = data_keys(http, tenant)

    def write(n: int) -> httpx.Response:
        with server.client() as own:
            return put_record(own, keys.ingest, ref, "profile", json.dumps({"n": n}).encode())

    with ThreadPoolExecutor(max_workers=writers) as pool:
        responses = list(pool.map(write, range(writers)))
    with server.client() as http:
        fetched = http.get(record_url(ref, "profile"), headers=auth(keys.read))
    assert sorted(r.status_code for r in responses) == [200] * (writers - 1) + [201], [
        r.text for r in responses if r.status_code not in (200, 201)
    ]
    versions = sorted(r.json()["version"] for r in responses)
    assert versions == list(range(1, writers + 1))
    last = next(r for r in responses if r.json()["version"] == writers)
    assert fetched.status_code == 200
    assert json.loads(fetched.content) == {"n": responses.index(last)}


def test_reads_during_replaces_always_see_a_whole_version(
    server: ServerThread, tenant: Tenant
) -> None:
    """A reader racing a replace gets the old or the new value, never 404 or 410."""
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        assert put_record(http, keys.ingest, ref, "profile", b'{"n": -1}').status_code == 201

    def write(n: int) -> int:
        with server.client() as own:
            for i in range(15):
                body = json.dumps({"n": n * 100 + i}).encode()
                put_record(own, keys.ingest, ref, "profile", body).raise_for_status()
        return 0

    def read(_: int) -> list[int]:
        with server.client() as own:
            statuses = []
            for _ in range(40):
                got = own.get(record_url(ref, "profile"), headers=auth(keys.read))
                statuses.append(got.status_code)
                if got.status_code == 200:
                    assert "n" in json.loads(got.content)
            return statuses

    with ThreadPoolExecutor(max_workers=8) as pool:
        writers = [pool.submit(write, n) for n in range(4)]
        readers = [pool.submit(read, n) for n in range(4)]
        statuses = [s for r in readers for s in r.result()]
        for w in writers:
            w.result()
    assert set(statuses) == {200}, sorted(set(statuses))


def test_replace_in_another_category_is_409_and_keeps_the_value(
    server: ServerThread, tenant: Tenant
) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        first = put_record(http, keys.ingest, ref, "invoice", b'{"n": 1}', "billing")
        conflict = put_record(http, keys.ingest, ref, "invoice", b'{"n": 2}', "account")
        same = put_record(http, keys.ingest, ref, "invoice", b'{"n": 3}', "billing")
        fetched = http.get(record_url(ref, "invoice"), headers=auth(keys.read))
    assert first.status_code == 201, first.text
    assert conflict.status_code == 409, conflict.text
    problem(conflict)
    assert same.status_code == 200, same.text
    assert same.json()["version"] == 2
    assert fetched.content == b'{"n": 3}'


# --- size, content type, syntax -----------------------------------------------------------


def test_record_of_exactly_one_mib_is_accepted(server: ServerThread, tenant: Tenant) -> None:
    ref = _ref()
    body = _json_string_of_exactly(MIB)
    with server.client() as http:
        keys = data_keys(http, tenant)
        created = put_record(http, keys.ingest, ref, "big", body)
        fetched = http.get(record_url(ref, "big"), headers=auth(keys.read))
    assert created.status_code == 201, created.text[:500]
    assert fetched.content == body


def test_record_of_one_mib_plus_one_byte_is_413(server: ServerThread, tenant: Tenant) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        refused = put_record(http, keys.ingest, ref, "big", _json_string_of_exactly(MIB + 1))
        fetched = http.get(record_url(ref, "big"), headers=auth(keys.read))
    assert refused.status_code == 413, refused.text[:500]
    problem(refused)
    assert fetched.status_code == 404


def test_chunked_record_over_one_mib_is_413(server: ServerThread, tenant: Tenant) -> None:
    body = _json_string_of_exactly(MIB + 1)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 100_000):
            yield body[start : start + 100_000]

    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        refused = http.put(
            record_url(ref, "big"),
            params={"category": "account"},
            content=chunks(),
            headers={**auth(keys.ingest), "Content-Type": "application/json"},
        )
    assert refused.status_code == 413, refused.text[:500]
    problem(refused)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/octet-stream", "application/x-www-form-urlencoded"]
)
def test_non_json_content_type_is_415(
    server: ServerThread, tenant: Tenant, content_type: str
) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        refused = put_record(http, keys.ingest, ref, "p", b'{"a": 1}', content_type=content_type)
        fetched = http.get(record_url(ref, "p"), headers=auth(keys.read))
    assert refused.status_code == 415, refused.text
    problem(refused)
    assert fetched.status_code == 404


@pytest.mark.parametrize(
    "body",
    [b'{"a": 1', b"\xff\xfe not utf-8", b"", b"{'single': 'quotes'}", b"NaN", b"[1,]"],
    ids=["truncated", "not-utf8", "empty", "single-quotes", "nan", "trailing-comma"],
)
def test_invalid_json_is_400(server: ServerThread, tenant: Tenant, body: bytes) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        refused = put_record(http, keys.ingest, ref, "p", body)
        fetched = http.get(record_url(ref, "p"), headers=auth(keys.read))
    assert refused.status_code == 400, refused.text
    problem(refused)
    assert fetched.status_code == 404


# --- names --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "x" * 200, "profile.v2_final-1", "UPPER.lower", "0", "-_."])
def test_valid_record_names_are_accepted(server: ServerThread, tenant: Tenant, name: str) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        created = put_record(http, keys.ingest, ref, name, b"1")
        fetched = http.get(record_url(ref, name), headers=auth(keys.read))
    assert created.status_code == 201, created.text
    assert created.json()["name"] == name
    assert fetched.content == b"1"


@pytest.mark.parametrize(
    "raw_name",
    ["x" * 201, "with%20space", "na%C3%AFve", "a+b", "semi%3Bcolon", "tab%09", "at@sign"],
    ids=["201-chars", "space", "non-ascii", "plus", "semicolon", "tab", "at-sign"],
)
def test_invalid_record_names_are_422(server: ServerThread, tenant: Tenant, raw_name: str) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        refused = http.put(
            f"{subject_url(ref, 'records')}/{raw_name}",
            params={"category": "account"},
            content=b"1",
            headers={**auth(keys.ingest), "Content-Type": "application/json"},
        )
        listed = http.get(subject_url(ref, "records"), headers=auth(keys.read))
    assert refused.status_code == 422, refused.text
    assert "name" in [e.get("field") for e in problem(refused).get("errors") or []]
    assert listed.status_code == 404 or listed.json()["items"] == []


# --- list and delete ----------------------------------------------------------------------


def test_list_shows_name_category_version_and_time_but_no_value(
    server: ServerThread, tenant: Tenant
) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        made = {
            "profile": put_record(http, keys.ingest, ref, "profile", b'{"secret": "s3cr3t-1"}'),
            "invoice": put_record(
                http, keys.ingest, ref, "invoice", b'{"secret": "s3cr3t-2"}', "billing"
            ),
            "ticket": put_record(
                http, keys.ingest, ref, "ticket", b'{"secret": "s3cr3t-3"}', "support"
            ),
        }
        made["profile"] = put_record(http, keys.ingest, ref, "profile", b'{"secret": "s3cr3t-4"}')
        listed = http.get(subject_url(ref, "records"), headers=auth(keys.read))
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["next_cursor"] is None
    items = {item["name"]: item for item in body["items"]}
    assert len(body["items"]) == 3
    for name, response in made.items():
        assert set(items[name]) >= RECORD_FIELDS
        for field in RECORD_FIELDS:
            assert items[name][field] == response.json()[field], (name, field)
    assert items["profile"]["version"] == 2
    assert b"s3cr3t" not in listed.content


def test_deleted_record_is_gone(server: ServerThread, tenant: Tenant) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        assert put_record(http, keys.ingest, ref, "gone", b'"bye-value"').status_code == 201
        assert put_record(http, keys.ingest, ref, "kept", b'"kept-value"').status_code == 201
        deleted = http.delete(record_url(ref, "gone"), headers=auth(keys.ingest))
        read = http.get(record_url(ref, "gone"), headers=auth(keys.read))
        compliance = http.get(record_url(ref, "gone"), headers=auth(keys.compliance))
        again = http.delete(record_url(ref, "gone"), headers=auth(keys.ingest))
        listed = http.get(subject_url(ref, "records"), headers=auth(keys.read))
        kept = http.get(record_url(ref, "kept"), headers=auth(keys.read))
    assert deleted.status_code == 204, deleted.text
    for response in (read, compliance, again):
        assert response.status_code in (404, 410), response.text
        problem(response)
        assert b"bye-value" not in response.content
    assert [item["name"] for item in listed.json()["items"]] == ["kept"]
    assert kept.content == b'"kept-value"'


def test_deleted_record_has_its_data_key_destroyed_in_the_database(
    server: ServerThread, tenant: Tenant, database_url: str
) -> None:
    """DELETE crypto-shreds the current version: its data key row keeps no wrapped key,
    only destroyed_at; another record's key is untouched."""
    ref = _ref()

    async def key_states() -> dict[str, tuple[bool, datetime | None]]:
        conn = await asyncpg.connect(database_url)  # the owner, like a stolen dump
        try:
            rows = await conn.fetch(
                """SELECT r.name, k.wrapped_key IS NULL AS wiped, k.destroyed_at
                     FROM records r JOIN data_keys k
                       ON k.tenant_id = r.tenant_id AND k.id = r.data_key_id
                    WHERE r.tenant_id = $1 AND r.name IN ('gone', 'kept')""",
                tenant.id,
            )
        finally:
            await conn.close()
        return {row["name"]: (row["wiped"], row["destroyed_at"]) for row in rows}

    with server.client() as http:
        keys = data_keys(http, tenant)
        assert put_record(http, keys.ingest, ref, "gone", b'"bye"').status_code == 201
        assert put_record(http, keys.ingest, ref, "kept", b'"stay"').status_code == 201
        assert asyncio.run(key_states()) == {"gone": (False, None), "kept": (False, None)}
        before = datetime.now(UTC)
        deleted = http.delete(record_url(ref, "gone"), headers=auth(keys.ingest))
        after = datetime.now(UTC)
    assert deleted.status_code == 204, deleted.text
    states = asyncio.run(key_states())
    wiped, destroyed_at = states["gone"]
    assert wiped is True
    assert destroyed_at is not None
    assert before - timedelta(seconds=5) <= destroyed_at <= after + timedelta(seconds=5)
    assert states["kept"] == (False, None)


def test_record_written_again_after_delete_starts_a_new_life(
    server: ServerThread, tenant: Tenant
) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        assert put_record(http, keys.ingest, ref, "r", b"1").status_code == 201
        assert http.delete(record_url(ref, "r"), headers=auth(keys.ingest)).status_code == 204
        again = put_record(http, keys.ingest, ref, "r", b"2", "support")
        fetched = http.get(record_url(ref, "r"), headers=auth(keys.read))
    assert again.status_code == 201, again.text
    assert again.json()["category"] == "support"
    assert fetched.content == b"2"


# --- scopes -------------------------------------------------------------------------------


def test_read_key_cannot_write_or_delete(server: ServerThread, tenant: Tenant) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        assert put_record(http, keys.ingest, ref, "r", b'"original"').status_code == 201
        write = put_record(http, keys.read, ref, "r", b'"changed"')
        create = put_record(http, keys.read, ref, "other", b'"new"')
        delete = http.delete(record_url(ref, "r"), headers=auth(keys.read))
        fetched = http.get(record_url(ref, "r"), headers=auth(keys.read))
    for response in (write, create, delete):
        assert response.status_code == 403, response.text
        problem(response)
    assert fetched.content == b'"original"'


def test_ingest_key_writes_but_cannot_read(server: ServerThread, tenant: Tenant) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        assert put_record(http, keys.ingest, ref, "r", b'"hidden-value"').status_code == 201
        read = http.get(record_url(ref, "r"), headers=auth(keys.ingest))
        listed = http.get(subject_url(ref, "records"), headers=auth(keys.ingest))
    for response in (read, listed):
        assert response.status_code == 403, response.text
        problem(response)
        assert b"hidden-value" not in response.content


def test_admin_only_key_is_403_on_every_record_route(server: ServerThread, tenant: Tenant) -> None:
    ref = _ref()
    with server.client() as http:
        keys = data_keys(http, tenant)
        assert put_record(http, keys.ingest, ref, "r", b'"admin-cannot-see"').status_code == 201
        responses = [
            put_record(http, keys.admin, ref, "r", b'"x"'),
            http.get(record_url(ref, "r"), headers=auth(keys.admin)),
            http.get(subject_url(ref, "records"), headers=auth(keys.admin)),
            http.delete(record_url(ref, "r"), headers=auth(keys.admin)),
        ]
        fetched = http.get(record_url(ref, "r"), headers=auth(keys.read))
    for response in responses:
        assert response.status_code == 403, response.text
        problem(response)
        assert b"admin-cannot-see" not in response.content
    assert fetched.content == b'"admin-cannot-see"'


def test_a_write_whose_read_state_changed_writes_nothing(
    server: ServerThread, tenant: Tenant, database_url: str
) -> None:
    """A record PUT reads, makes its key, then writes with no lock held in between; the
    write re-checks under the subject's lock what it read (records.sql `write`). A stale
    version or generation, a value sealed for another version than the next, or a data key
    wrapped under subject-key bytes a rewrap has replaced, writes nothing (the service
    reads again); the same call with the state as it is writes the version the value was
    sealed for, which the state named."""
    ref, name = _ref(), f"profile-{uuid.uuid4().hex[:8]}"
    with server.client() as http:
        keys = data_keys(http, tenant)
        for n in (1, 2):
            put_record(http, keys.ingest, ref, name, json.dumps({"n": n}).encode())

    async def attempts() -> tuple[int, list[bool], int, int]:
        conn = await asyncpg.connect(database_url)  # the owner, to read the state
        try:
            state = await conn.fetchrow(
                """SELECT r.subject_id, r.version, r.data_key_id, r.category, s.generation,
                          s.ref_hash, d.subject_key_id, k.kek_version
                     FROM records r
                     JOIN subjects s ON s.tenant_id = r.tenant_id AND s.id = r.subject_id
                     JOIN data_keys d ON d.tenant_id = r.tenant_id AND d.id = r.data_key_id
                     JOIN subject_keys k ON k.tenant_id = d.tenant_id AND k.id = d.subject_key_id
                    WHERE r.tenant_id = $1 AND r.name = $2 AND r.current""",
                tenant.id,
                name,
            )
            assert state is not None
            count_keys = "SELECT count(*) FROM data_keys WHERE tenant_id = $1"
            keys_before = await conn.fetchval(count_keys, tenant.id)
            await conn.execute("SET ROLE datavault_app")
            read = await conn.fetchrow(
                "SELECT * FROM dv_record_write_state($1, NULL, $2, $3, NULL)",
                tenant.id, state["ref_hash"], name,
            )  # fmt: skip

            async def write(
                version: int, generation: int, sealed_for: int, wrapped_under: int
            ) -> bool:
                row = await conn.fetchrow(
                    "SELECT * FROM dv_record_write($1, NULL, $2, $3, $4, $5, $6, $7, $8, $9,"
                    " $10, $11, $12, 10, $13)",
                    tenant.id, state["subject_id"], name, state["category"], generation, version,
                    state["data_key_id"], sealed_for, uuid.uuid4(), state["subject_key_id"],
                    b"w" * 60, b"s" * 60, wrapped_under,
                )  # fmt: skip
                return row is not None and row["version"] == sealed_for

            generation, current = state["generation"], state["kek_version"]
            results = [
                await write(1, generation, 2, current),  # another writer replaced version 1
                await write(2, generation + 1, 3, current),  # an erasure began a new life
                await write(2, generation, 2, current),  # sealed for a version already taken
                await write(2, generation, 4, current),  # sealed for a version that is not next
                await write(2, generation, 3, current - 1),  # wrapped under replaced bytes
                await write(2, generation, 3, current),  # the state as it is: written
            ]
            await conn.execute("RESET ROLE")
            newest = await conn.fetchval(
                "SELECT max(version) FROM records WHERE tenant_id = $1 AND subject_id = $2",
                tenant.id,
                state["subject_id"],
            )
            new_keys = await conn.fetchval(count_keys, tenant.id) - keys_before
            assert read is not None
            return read["next_version"], results, new_keys, newest
        finally:
            await conn.close()

    next_version, results, new_keys, newest = asyncio.run(attempts())
    assert next_version == 3
    assert results == [False, False, False, False, False, True]
    assert new_keys == 1
    assert newest == 3


def test_numbers_go_on_after_a_delete_and_the_value_is_sealed_for_its_number(
    server: ServerThread, tenant: Tenant, database_url: str
) -> None:
    """The next version after a delete is one more than the newest there was; the value
    written then is bound to that number (it reads back; as another version it would not)."""
    ref, name = _ref(), f"again-{uuid.uuid4().hex[:8]}"
    with server.client() as http:
        keys = data_keys(http, tenant)
        for value in (b"1", b"2"):
            assert put_record(http, keys.ingest, ref, name, value).status_code in (200, 201)
        assert http.delete(record_url(ref, name), headers=auth(keys.ingest)).status_code == 204
        again = put_record(http, keys.ingest, ref, name, b'"third"')
        fetched = http.get(record_url(ref, name), headers=auth(keys.read))
    assert again.status_code == 201, again.text
    assert again.json()["version"] == 3
    assert fetched.content == b'"third"'


# --- each value bound to its record -------------------------------------------------------


async def _swap_record_values(database_url: str, tenant_id: uuid.UUID, *names: str) -> None:
    """As the table owner (a stolen or restored database, a careless operator): swap the
    current versions' (data_key_id, value_sealed) between two records of one subject."""
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            rows = []
            for name in names:
                row = await conn.fetchrow(
                    "SELECT subject_id, version, data_key_id, value_sealed FROM records"
                    " WHERE tenant_id = $1 AND name = $2 AND current",
                    tenant_id,
                    name,
                )
                assert row is not None
                rows.append(row)
            assert rows[0]["subject_id"] == rows[1]["subject_id"]
            for name, other in zip(names, reversed(rows), strict=True):
                await conn.execute(
                    "UPDATE records SET data_key_id = $4, value_sealed = $5"
                    " WHERE tenant_id = $1 AND subject_id = $2 AND name = $3 AND current",
                    tenant_id, other["subject_id"], name, other["data_key_id"],
                    other["value_sealed"],
                )  # fmt: skip
    finally:
        await conn.close()


def test_values_swapped_between_two_records_are_integrity_errors_never_the_other_value(
    server: ServerThread, tenant: Tenant, database_url: str
) -> None:
    """DESIGN.md "Key hierarchy": a ciphertext moved to another record fails to open. Each
    value is bound to its record's name and version, not only to its data key, so a row
    that names another record's key and value reads as neither."""
    ref, tag = _ref(), uuid.uuid4().hex[:8]
    names = (f"email-{tag}", f"phone-{tag}")
    values = (b'"alice@example.org"', b'"+44 20 7946 0000"')
    with server.client() as http:
        keys = data_keys(http, tenant)
        for name, value in zip(names, values, strict=True):
            assert put_record(http, keys.ingest, ref, name, value).status_code == 201
        asyncio.run(_swap_record_values(database_url, tenant.id, *names))
        reads = [
            http.get(record_url(ref, name), headers=auth(key))
            for name in names
            for key in (keys.read, keys.compliance)
        ]
        healthy = http.get("/healthz")
    for response in reads:
        assert response.status_code == 500, (response.status_code, response.text)
        assert problem(response)["type"].endswith("/integrity")
        for value in values:
            assert value not in response.content
    assert healthy.status_code == 200


def test_a_record_sealed_before_objects_were_bound_still_reads(
    server: ServerThread, tenant: Tenant, settings: Settings, database_url: str
) -> None:
    """A value the previous release wrote (record v1, `B1`: no object in its associated
    data) still reads through the vault's read path, which now names the object; the next
    write seals the record as `B2`."""
    ref, name = _ref(), f"legacy-{uuid.uuid4().hex[:8]}"
    with server.client() as http:
        keys = data_keys(http, tenant)
        assert put_record(http, keys.ingest, ref, name, b'"new format"').status_code == 201
        asyncio.run(_reseal_as_b1(settings, database_url, tenant.id, name, b'"old format"'))
        old = http.get(record_url(ref, name), headers=auth(keys.read))
        assert put_record(http, keys.ingest, ref, name, b'"replaced"').status_code == 200
        new = http.get(record_url(ref, name), headers=auth(keys.read))
    assert old.status_code == 200 and old.content == b'"old format"'
    assert new.status_code == 200 and new.content == b'"replaced"'
    assert asyncio.run(_current_sealed(database_url, tenant.id, name))[0] == 0xB2


async def _reseal_as_b1(
    settings: Settings, database_url: str, tenant_id: uuid.UUID, name: str, value: bytes
) -> None:
    async with (
        operator_context(settings, database_url) as ctx,
        ctx.db.tenant_tx(tenant_id) as tx,
    ):
        row = await tx.fetchrow(
            "SELECT subject_id, version, data_key_id FROM records"
            " WHERE tenant_id = $1 AND name = $2 AND current",
            tenant_id,
            name,
        )
        assert row is not None
        key = await ctx.keyring.data_key(tx, tenant_id, row["data_key_id"])
        # What the previous release wrote: the same context, no object bound.
        context = key.content_context(record_object(name, row["version"]))
        sealed = _seal_record_with(key.key, value, context, random_bytes, RECORD_V1)
        assert sealed[0] == 0xB1
    conn = await asyncpg.connect(database_url)  # the table owner
    try:
        await conn.execute(
            "UPDATE records SET value_sealed = $4"
            " WHERE tenant_id = $1 AND subject_id = $2 AND name = $3 AND current",
            tenant_id, row["subject_id"], name, sealed,
        )  # fmt: skip
    finally:
        await conn.close()


async def _current_sealed(database_url: str, tenant_id: uuid.UUID, name: str) -> bytes:
    conn = await asyncpg.connect(database_url)
    try:
        sealed = await conn.fetchval(
            "SELECT value_sealed FROM records WHERE tenant_id = $1 AND name = $2 AND current",
            tenant_id,
            name,
        )
    finally:
        await conn.close()
    return bytes(sealed)
