"""Text the database cannot hold, numbers Python will not convert, and Range positions
beyond any size: each field family answers 400 or 422 problem+json, never 500 (issue 18,
item 5; vault/domain/text.py is the one rule). And an unexpected error's log line names
its type and request id, never its message."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import structlog

from tests.api.helpers import auth, create_key, subject_url, upload
from tests.console.support import sign_in, signed_in_token
from tests.support import ServerThread, Tenant, problem

# JSON spellings of text PostgreSQL refuses: a lone surrogate, and NUL.
BAD_TEXT = {"surrogate": '"a\\ud800b"', "nul": '"a\\u0000b"'}
HUGE_INTEGER = "9" * 4301  # one digit past Python's int-from-string limit


@dataclass(frozen=True)
class Keys:
    admin: dict[str, str]
    compliance: dict[str, str]
    erasure: dict[str, str]
    app: dict[str, str]
    app_key: dict[str, Any]


@pytest.fixture
def keys(server: ServerThread, tenant: Tenant) -> Keys:
    with server.client() as http:
        app_key = create_key(http, tenant, ["ingest", "read"])
        return Keys(
            admin=tenant.auth(),
            compliance=auth(create_key(http, tenant, ["compliance"])),
            erasure=auth(create_key(http, tenant, ["erasure"])),
            app=auth(app_key),
            app_key=app_key,
        )


@pytest.fixture
def http(server: ServerThread) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def _send(
    http: httpx.Client, method: str, url: str, body: str, headers: dict[str, str]
) -> httpx.Response:
    """A hand-written JSON body (httpx cannot encode a lone surrogate itself)."""
    return http.request(
        method, url, content=body.encode(), headers={**headers, "Content-Type": "application/json"}
    )


def _hold(http: httpx.Client, keys: Keys, reason: str = "billing") -> str:
    placed = http.post(
        "/v1/holds", json={"reason": reason, "reference": "CASE-7"}, headers=keys.compliance
    )
    assert placed.status_code == 201, placed.text
    return str(placed.json()["id"])


# Each family: (method, url, body template with {text}, which key) built per test.
Request = Callable[[httpx.Client, Keys, str], httpx.Response]


def _object(**raw_values: str) -> str:
    """A JSON object from values already written as JSON text."""
    return "{" + ",".join(f'"{name}":{value}' for name, value in raw_values.items()) + "}"


def _place_hold(field: str) -> Request:
    def send(http: httpx.Client, keys: Keys, text: str) -> httpx.Response:
        body = _object(**{"reason": '"billing"', "reference": '"CASE-1"', field: text})
        return _send(http, "POST", "/v1/holds", body, keys.compliance)

    return send


def _amend_note(http: httpx.Client, keys: Keys, text: str) -> httpx.Response:
    hold = _hold(http, keys)
    return _send(http, "PATCH", f"/v1/holds/{hold}", _object(note=text), keys.compliance)


def _release_reason(http: httpx.Client, keys: Keys, text: str) -> httpx.Response:
    hold = _hold(http, keys)
    url = f"/v1/holds/{hold}/release"
    return _send(http, "POST", url, _object(reason=text), keys.compliance)


def _erasure(field: str) -> Request:
    def send(http: httpx.Client, keys: Keys, text: str) -> httpx.Response:
        url = subject_url(f"erase-{uuid.uuid4()}", "erasure")
        return _send(http, "POST", url, _object(**{field: text}), keys.erasure)

    return send


def _key_name(http: httpx.Client, keys: Keys, text: str) -> httpx.Response:
    return _send(http, "POST", "/v1/api-keys", _object(name=text, scopes='["read"]'), keys.admin)


def _restriction(http: httpx.Client, keys: Keys, text: str) -> httpx.Response:
    url = subject_url(f"restrict-{uuid.uuid4()}", "restriction")
    return _send(http, "POST", url, _object(reason=text), keys.compliance)


def _closure(http: httpx.Client, keys: Keys, text: str) -> httpx.Response:
    return _send(http, "POST", "/v1/tenant/closure", _object(reason=text), keys.admin)


def _settings_category(http: httpx.Client, keys: Keys, text: str) -> httpx.Response:
    return _send(http, "PATCH", "/v1/tenant/settings", _object(categories=f"[{text}]"), keys.admin)


def _unknown_key(http: httpx.Client, keys: Keys, text: str) -> httpx.Response:
    # The text rule covers object keys as well as values.
    return _send(http, "POST", "/v1/holds", "{" + text + ":1}", keys.compliance)


BODY_FIELDS: dict[str, Request] = {
    "hold-reference": _place_hold("reference"),
    "hold-note": _place_hold("note"),
    "hold-subject_ref": _place_hold("subject_ref"),
    "hold-amend-note": _amend_note,
    "hold-release-reason": _release_reason,
    "erasure-reason": _erasure("reason"),
    "erasure-reference": _erasure("reference"),
    "api-key-name": _key_name,
    "restriction-reason": _restriction,
    "closure-reason": _closure,
    "settings-category": _settings_category,
    "object-key": _unknown_key,
}


def _refused(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, (response.status_code, response.text)
    body = problem(response)
    assert body["request_id"] == response.headers["X-Request-Id"]
    assert {"type", "title", "status", "detail"} <= set(body)
    return body


@pytest.mark.parametrize("bad", sorted(BAD_TEXT))
@pytest.mark.parametrize("family", sorted(BODY_FIELDS))
def test_text_the_database_cannot_hold_is_422_in_every_body_field(
    http: httpx.Client, keys: Keys, family: str, bad: str
) -> None:
    body = _refused(BODY_FIELDS[family](http, keys, BAD_TEXT[bad]), 422)
    assert body["errors"] and body["errors"][0]["field"]
    # The refusal never repeats the text it refused.
    assert "a\ud800b" not in json.dumps(body, ensure_ascii=False) and "a\x00b" not in str(body)


def test_clean_text_in_the_same_fields_is_accepted(http: httpx.Client, keys: Keys) -> None:
    """The positive twin: the same requests with plain text succeed."""
    for family in ("hold-note", "hold-reference", "erasure-reason", "api-key-name"):
        response = BODY_FIELDS[family](http, keys, '"ordinary text"')
        assert response.status_code in (200, 201, 202), (family, response.text)


def _query(http: httpx.Client, keys: Keys, url: str, headers: str, **params: str) -> httpx.Response:
    return http.get(url, params=params, headers=getattr(keys, headers))


QUERY_CASES = {
    "holds-subject_ref": ("/v1/holds", "compliance", "subject_ref"),
    "holds-reason": ("/v1/holds", "compliance", "reason"),
    "erasures-subject_ref": ("/v1/erasures", "erasure", "subject_ref"),
    "erasures-status": ("/v1/erasures", "erasure", "status"),
    "access-log-subject_ref": ("/v1/access-log", "compliance", "subject_ref"),
    "artefacts-category": (subject_url("q-subject", "artefacts"), "app", "category"),
}


@pytest.mark.parametrize("case", sorted(QUERY_CASES))
def test_nul_in_a_query_parameter_is_422(http: httpx.Client, keys: Keys, case: str) -> None:
    url, key, name = QUERY_CASES[case]
    response = _query(http, keys, url, key, **{name: "a\x00b"})
    body = _refused(response, 422)
    assert body["errors"][0]["field"] == name


def test_nul_in_a_record_category_query_is_422_not_500(http: httpx.Client, keys: Keys) -> None:
    url = subject_url("record-subject", "records", "profile")
    response = http.put(
        url,
        params={"category": "acc\x00ount"},
        content=b"{}",
        headers={**keys.app, "Content-Type": "application/json"},
    )
    _refused(response, 422)


@pytest.mark.parametrize("encoded", ["a%00b", "%00"])
def test_nul_in_a_subject_reference_path_is_422(
    http: httpx.Client, keys: Keys, encoded: str
) -> None:
    _refused(http.get(f"/v1/subjects/{encoded}", headers=keys.app), 422)


@pytest.mark.parametrize(
    ("family", "body"),
    [
        ("hold", '{"reason":"billing","reference":%s}'),
        ("settings", '{"erasure_grace_hours":%s}'),
        ("erasure", '{"reason":"r","reference":"x","extra":%s}'),
    ],
)
def test_an_integer_of_more_than_4300_digits_is_400(
    http: httpx.Client, keys: Keys, family: str, body: str
) -> None:
    targets = {
        "hold": ("POST", "/v1/holds", keys.compliance),
        "settings": ("PATCH", "/v1/tenant/settings", keys.admin),
        "erasure": ("POST", subject_url("big-number", "erasure"), keys.erasure),
    }
    method, url, headers = targets[family]
    response = _send(http, method, url, body % HUGE_INTEGER, headers)
    assert "4300" in _refused(response, 400)["detail"]


def test_an_integer_of_4300_digits_is_parsed_and_judged_as_a_value(
    http: httpx.Client, keys: Keys
) -> None:
    response = _send(
        http, "PATCH", "/v1/tenant/settings", '{"erasure_grace_hours":%s}' % ("9" * 4300),
        keys.admin,
    )  # fmt: skip
    assert problem(response)["status"] == 422  # out of range, not unparseable


def test_a_record_holding_a_huge_integer_is_400(http: httpx.Client, keys: Keys) -> None:
    response = http.put(
        subject_url("record-big", "records", "n"),
        params={"category": "account"},
        content=HUGE_INTEGER.encode(),
        headers={**keys.app, "Content-Type": "application/json"},
    )
    _refused(response, 400)


# --- Range positions with more digits than any size --------------------------------------


@pytest.fixture
def artefact(http: httpx.Client, keys: Keys) -> str:
    created = upload(http, keys.app_key, "ranged", b"0123456789")
    assert created.status_code == 201, created.text
    return subject_url("ranged", "artefacts", str(created.json()["id"]), "content")


@pytest.mark.parametrize("digits", [20, 4301, 10_000])
def test_a_range_starting_beyond_any_size_is_416(
    http: httpx.Client, keys: Keys, artefact: str, digits: int
) -> None:
    response = http.get(artefact, headers={**keys.app, "Range": f"bytes={'9' * digits}-"})
    _refused(response, 416)
    assert response.headers["Content-Range"] == "bytes */10"


@pytest.mark.parametrize("digits", [20, 4301, 10_000])
def test_a_range_ending_or_a_suffix_beyond_any_size_reaches_the_end(
    http: httpx.Client, keys: Keys, artefact: str, digits: int
) -> None:
    huge = "9" * digits
    to_end = http.get(artefact, headers={**keys.app, "Range": f"bytes=4-{huge}"})
    suffix = http.get(artefact, headers={**keys.app, "Range": f"bytes=-{huge}"})
    assert to_end.status_code == 206 and to_end.content == b"456789"
    assert suffix.status_code == 206 and suffix.content == b"0123456789"


def test_leading_zeros_do_not_make_a_small_position_huge(
    http: httpx.Client, keys: Keys, artefact: str
) -> None:
    zeros = "0" * 5000
    response = http.get(artefact, headers={**keys.app, "Range": f"bytes={zeros}3-{zeros}4"})
    assert response.status_code == 206 and response.content == b"34"


# --- the unhandled-error log line --------------------------------------------------------


def test_an_unexpected_error_is_logged_by_type_and_request_id_without_its_message(
    server: ServerThread, http: httpx.Client, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncpg's messages quote the data they refused (40 characters of a hold note with a
    person's name in it): the log line must not carry them."""
    name = "Alice Example of 12 Cherry Lane"

    async def failing(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f'invalid byte sequence near "{name}"')

    state = server.state
    monkeypatch.setattr(state.holds, "place", failing)
    with structlog.testing.capture_logs() as logs:
        response = http.post(
            "/v1/holds", json={"reason": "billing", "reference": "x"}, headers=keys.compliance
        )
    body = _refused(response, 500)
    assert name not in response.text
    (line,) = [entry for entry in logs if entry["event"] == "unhandled_error"]
    assert line["error_type"] == "RuntimeError"
    assert line["request_id"] == body["request_id"]
    assert set(line) <= {"event", "log_level", "error_type", "request_id", "error_at"}
    assert name not in repr(line) and "Cherry" not in repr(line)


def test_nul_in_a_console_form_field_is_a_422_page(server: ServerThread, tenant: Tenant) -> None:
    with server.client() as http:
        sign_in(http, create_key(http, tenant, ["compliance"])["secret"])
        token = signed_in_token(http)
        fields = {"csrf_token": token, "reason": "billing", "reference": "CASE-9"}
        refused = http.post("/console/holds/new", data={**fields, "note": "Alice\x00Example"})
        placed = http.post("/console/holds/new", data={**fields, "note": "plain note"})
    assert refused.status_code == 422, refused.text[:300]
    assert "Alice" not in refused.text
    assert placed.status_code == 303, placed.text[:300]
