"""The operation wrapper (vault/http/operation.py): what a declaration accepts, how a
refused value is reported, and that an answer the declaration does not name fails."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

import msgspec
import pytest
from starlette.requests import Request
from starlette.responses import Response

from vault.domain.holds import HoldReason
from vault.errors import InvalidInput
from vault.http.models.holds import HoldListQuery, HoldPlacement
from vault.http.models.tenant import SettingsChange
from vault.http.operation import (
    Tag,
    UndeclaredAnswer,
    convert,
    ok,
    operation,
    operation_of,
    render,
)


class Pong(msgspec.Struct):
    status: str


class Other(msgspec.Struct):
    status: str


def _request() -> Request:
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    return Request(scope)


def _answer(endpoint: Callable[[Request], Awaitable[Response]]) -> Response:
    """The endpoint's answer to a request (the decorated endpoint returns an awaitable,
    which asyncio.run does not take as it is)."""

    async def call() -> Response:
        return await endpoint(_request())

    return asyncio.run(call())


def test_a_declared_answer_passes_and_an_undeclared_model_or_status_fails() -> None:
    @operation("ping", tag=Tag.OPERATIONS, summary="ping", scope=None, answers={200: ok(Pong)})
    async def ping(request: Request) -> Response:
        return render(Pong("ok"))

    @operation("other", tag=Tag.OPERATIONS, summary="x", scope=None, answers={200: ok(Pong)})
    async def wrong_model(request: Request) -> Response:
        return render(Other("ok"))

    @operation("status", tag=Tag.OPERATIONS, summary="x", scope=None, answers={200: ok(Pong)})
    async def wrong_status(request: Request) -> Response:
        return render(Pong("ok"), status=201)

    assert _answer(ping).status_code == 200
    for endpoint in (wrong_model, wrong_status):
        with pytest.raises(UndeclaredAnswer):
            _answer(endpoint)
    declared = operation_of(ping)
    assert declared is not None and declared.operation_id == "ping"


def test_a_handler_may_read_only_what_the_wrapper_provides() -> None:
    declare = operation("x", tag=Tag.OPERATIONS, summary="x", scope=None, answers={})

    async def reads_headers(request: Request, headers: dict[str, str]) -> Response:
        return Response()

    async def reads_caller_without_scope(request: Request, caller: object) -> Response:
        return Response()

    with pytest.raises(TypeError):
        declare(reads_headers)
    with pytest.raises(TypeError):
        declare(reads_caller_without_scope)


def test_a_refused_enum_value_is_not_repeated_but_the_allowed_ones_are_named() -> None:
    with pytest.raises(InvalidInput) as refused:
        convert({"reason": "Alice Example", "reference": "x"}, HoldPlacement)
    assert refused.value.field == "reason"
    assert "Alice" not in refused.value.detail
    assert all(reason.value in refused.value.detail for reason in HoldReason)


def test_a_nested_refusal_names_the_top_field_and_the_path() -> None:
    with pytest.raises(InvalidInput) as refused:
        convert({"retention": {"recording": {"delete_after_days": 0}}}, SettingsChange)
    assert refused.value.field == "retention"
    assert "delete_after_days" in refused.value.detail and ">= 1" in refused.value.detail


def test_unknown_fields_are_all_named() -> None:
    with pytest.raises(InvalidInput) as refused:
        convert({"reason": "billing", "reference": "x", "colour": 1, "size": 2}, HoldPlacement)
    assert [e["field"] for e in refused.value.extra["errors"]] == ["colour", "size"]


def test_times_are_kept_in_utc_and_one_out_of_range_there_is_refused() -> None:
    placed = convert(
        {"reason": "billing", "reference": "x", "expires_at": "2030-01-01T02:00:00+02:00"},
        HoldPlacement,
    )
    assert placed.expires_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert placed.expires_at.tzinfo is UTC
    with pytest.raises(InvalidInput) as refused:
        convert({"reason": "billing", "reference": "x", "expires_at": "0001-01-01T00:00:00+01:00"},
                HoldPlacement)  # fmt: skip
    assert refused.value.field == "expires_at"


def test_query_strings_convert_to_the_model_types() -> None:
    query = convert({"active": "true", "limit": "7"}, HoldListQuery, strict=False)
    assert (query.active, query.limit, query.cursor) == (True, 7, None)
    with pytest.raises(InvalidInput) as refused:
        convert({"limit": "501"}, HoldListQuery, strict=False)
    assert refused.value.field == "limit"


def test_a_json_body_is_strict_about_types() -> None:
    # A JSON number in quotes, or true for a number, is not what the model says.
    with pytest.raises(InvalidInput):
        convert({"erasure_grace_hours": "5"}, SettingsChange)
    with pytest.raises(InvalidInput):
        convert({"erasure_grace_hours": True}, SettingsChange)
    assert convert({"erasure_grace_hours": 5}, SettingsChange).erasure_grace_hours == 5


Limited = Annotated[int, msgspec.Meta(le=3)]
