"""One operation of the JSON API, declared once beside its handler.

    @operation(
        "placeHold", tag=HOLDS, summary="Place a legal hold", scope=Scope.COMPLIANCE,
        answers={201: created(Hold, "/v1/holds/{hold_id}")},
    )
    async def place_hold(request: Request, caller: Principal, body: HoldPlacement) -> Response:
        hold = await vault_state(request).holds.place(caller.tenant_id, ...)
        return render(Hold.of(hold), status=201, headers={"Location": ...})

The route table (vault/app.py) says where an operation lives (path and method); this
declaration says everything else, and the OpenAPI document (vault/http/openapi.py) is
built from the two. The handler's parameters say what the operation reads; the wrapper
provides them in this order, each checked before the next is read:

- `caller: Principal`: the API key, holding one of `scope` (401, 403, 429 before all);
- `ref: SubjectRef`: the subject reference in the path (`{ref}`), NFC-normalised, its keyed
  hash noted for the access log;
- `query: <Struct>`: the query string, validated by that model (an unknown parameter 422);
- `body: <Struct>` (`<Struct> | None`: the body is optional): the JSON body, read within
  MAX_JSON_BODY_BYTES, every string through the text rule (vault/domain/text.py), then
  validated by that model.
- `body: dict[str, Any]` with `body_as_sent=<Struct>`: the same reading, unknown fields
  refused, but the JSON object handed over as sent, for a service that checks every field
  itself and names each wrong one at once (a disclosure; the console's form shares those
  checks); the model is what the document shows.

The handler calls one service method (which owns its transaction) and renders the result
with `render`, as the model that `answers` declares for the status; an answer the
declaration does not name fails loudly, so the document cannot drift from the code.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from vault.domain.scopes import Scope
from vault.errors import InvalidInput
from vault.http.auth import require
from vault.http.body import has_body, read_json_object
from vault.http.problems import NO_STORE
from vault.http.subject_path import subject_ref
from vault.http.subject_request import note_subject

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[..., Awaitable[Response]]
ModelT = TypeVar("ModelT", bound=msgspec.Struct)


class Tag(StrEnum):
    """Groups of operations in the API description (their descriptions: openapi.py)."""

    OPERATIONS = "operations"
    TENANT = "tenant"
    API_KEYS = "api-keys"
    ACCESS_LOG = "access-log"
    SUBJECTS = "subjects"
    ARTEFACTS = "artefacts"
    RECORDS = "records"
    ERASURES = "erasures"
    HOLDS = "holds"
    DISCLOSURES = "disclosures"
    WEBHOOKS = "webhooks"


JSON = "application/json"
# The schema of a body that is any JSON value (a record).
ANY_JSON: Mapping[str, Any] = {"description": "any JSON value"}
BINARY: Mapping[str, Any] = {"type": "string", "format": "binary"}


@dataclass(frozen=True)
class Header:
    """A header: of a request the handler reads, or of an answer."""

    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Answer:
    """One documented answer: a model rendered as JSON, or another body (`media`,
    `schema`), or none."""

    description: str
    model: type[msgspec.Struct] | None = None
    media: str = JSON
    schema: Mapping[str, Any] | None = None
    headers: tuple[Header, ...] = ()


def ok(model: type[msgspec.Struct], description: str = "Success") -> Answer:
    return Answer(description, model)


def created(model: type[msgspec.Struct], location: str, description: str = "Created") -> Answer:
    """A 201 (or 202) answer with the Location of what it made."""
    return Answer(
        description, model, headers=(Header("Location", f"The new resource: {location}"),)
    )


def no_content(description: str = "Done") -> Answer:
    return Answer(description, media="")


@dataclass(frozen=True)
class RawBody:
    """A request body the handler reads itself (streamed bytes, a JSON value kept as sent)."""

    media: str
    schema: Mapping[str, Any]
    description: str


@dataclass(frozen=True)
class Operation:
    operation_id: str
    tag: Tag
    summary: str
    scope: tuple[Scope, ...]  # empty: no authentication
    answers: Mapping[int, Answer]
    errors: tuple[int, ...]
    description: str
    query: type[msgspec.Struct] | None
    body: type[msgspec.Struct] | None
    body_required: bool
    body_checked_by_service: bool
    raw_body: RawBody | None
    headers: tuple[Header, ...]
    reads_ref: bool
    key_checked_in_statement: bool


class UndeclaredAnswer(RuntimeError):
    """A handler answered with a status or model its operation does not declare."""


def operation(
    operation_id: str,
    *,
    tag: Tag,
    summary: str,
    scope: Scope | tuple[Scope, ...] | None,
    answers: Mapping[int, Answer],
    errors: tuple[int, ...] = (),
    description: str = "",
    raw_body: RawBody | None = None,
    headers: tuple[Header, ...] = (),
    key_checked_in_statement: bool = False,
    body_as_sent: type[msgspec.Struct] | None = None,
) -> Callable[[Handler], Endpoint]:
    """Declare an operation; see the module docstring. `scope`: the scope it needs, or
    scopes any one of which will do. `errors`: problem statuses beside the ones the
    wrapper itself can answer (authentication, body, query). `key_checked_in_statement`:
    the service checks the key's revocation in its own statement (ApiKeyService).
    `body_as_sent`: the model of a body the service checks itself (see above)."""
    scopes = (scope,) if isinstance(scope, Scope) else tuple(scope or ())

    def declare(handler: Handler) -> Endpoint:
        reads = _parameters(handler)
        if ("caller" in reads and not scopes) or ("ref" in reads and not scopes):
            raise TypeError(f"{handler.__name__}: reads the caller but declares no scope")
        body_type, body_required = _unwrap_optional(reads.get("body"))
        if body_as_sent is not None:
            if "body" not in reads:
                raise TypeError(f"{handler.__name__}: body_as_sent but reads no body")
            body_type = body_as_sent
        if body_type is not None and raw_body is not None:
            raise TypeError(f"{handler.__name__}: a JSON body model and a raw body")
        declared = Operation(
            operation_id, tag, summary, scopes, dict(answers), errors, description,
            reads.get("query"), body_type, body_required, body_as_sent is not None, raw_body,
            headers,
            "ref" in reads, key_checked_in_statement,
        )  # fmt: skip

        async def endpoint(request: Request) -> Response:
            arguments: dict[str, Any] = {}
            if scopes:
                caller = await require(
                    request, *scopes, liveness_in_statement=key_checked_in_statement
                )
                if "caller" in reads:
                    arguments["caller"] = caller
                if declared.reads_ref:
                    ref = subject_ref(request)
                    await note_subject(request, caller.tenant_id, ref)
                    arguments["ref"] = ref
            if declared.query is not None:
                arguments["query"] = parse_query(request, declared.query)
            if declared.body_checked_by_service:
                arguments["body"] = await read_body_as_sent(request, declared.body, body_required)
            elif declared.body is not None:
                arguments["body"] = await parse_body(request, declared.body, body_required)
            response = await handler(request, **arguments)
            _check_answer(declared, response)
            return response

        endpoint.__name__ = handler.__name__
        endpoint.__qualname__ = handler.__qualname__
        endpoint.__doc__ = handler.__doc__
        endpoint.__dict__["operation"] = declared
        return endpoint

    return declare


def operation_of(endpoint: Callable[..., Any]) -> Operation | None:
    """The declaration of an endpoint (also through idempotent(), which copies it)."""
    declared = getattr(endpoint, "operation", None)
    return declared if isinstance(declared, Operation) else None


_READS = {"caller", "ref", "query", "body"}


def _parameters(handler: Handler) -> dict[str, Any]:
    names = list(inspect.signature(handler).parameters)
    if not names or names[0] != "request":
        raise TypeError(f"{handler.__name__}: the first parameter is the request")
    unknown = set(names[1:]) - _READS
    if unknown:
        raise TypeError(f"{handler.__name__}: cannot provide {sorted(unknown)}")
    hints = typing.get_type_hints(handler)
    return {name: hints.get(name) for name in names[1:]}


def _unwrap_optional(annotation: Any) -> tuple[type[msgspec.Struct] | None, bool]:
    """(model, required) of a `body` annotation: `Model` or `Model | None`."""
    if annotation is None:
        return None, False
    arguments = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) and type(None) in arguments:
        (model,) = [a for a in arguments if a is not type(None)]
        return model, False
    return annotation, True


def _check_answer(declared: Operation, response: Response) -> None:
    answer = declared.answers.get(response.status_code)
    if answer is None:
        raise UndeclaredAnswer(f"{declared.operation_id} answered {response.status_code}")
    rendered = getattr(response, "model_type", None)
    if answer.model is not None and rendered is not answer.model:
        raise UndeclaredAnswer(
            f"{declared.operation_id} {response.status_code}: {rendered} is not {answer.model}"
        )


# --- parsing ---------------------------------------------------------------------------


async def parse_body(request: Request, model: type[ModelT], required: bool = True) -> ModelT | None:
    """The JSON body as `model`; None for an optional body that was not sent."""
    if not required and not has_body(request):
        return None
    return convert(await read_json_object(request), model)


async def read_body_as_sent(
    request: Request, model: type[msgspec.Struct] | None, required: bool = True
) -> dict[str, Any] | None:
    """The JSON object as sent, its fields among `model`'s; None for an optional body that
    was not sent."""
    if not required and not has_body(request):
        return None
    value = await read_json_object(request)
    if model is not None:
        _refuse_unknown_fields(value, model)
    return value


def _refuse_unknown_fields(value: dict[str, Any], model: type[msgspec.Struct]) -> None:
    unknown = set(value) - set(model.__struct_fields__)
    if unknown:
        first, *rest = sorted(unknown)
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}", field=first, also=rest)


def parse_query(request: Request, model: type[ModelT]) -> ModelT:
    """The query string as `model`. Every value has passed the text rule already
    (routing.check_query_text); an empty value counts as left out."""
    params = request.query_params
    unknown = set(params) - set(model.__struct_fields__)
    if unknown:
        first, *rest = sorted(unknown)
        raise InvalidInput(
            f"unknown query parameters: {', '.join(sorted(unknown))}", field=first, also=rest
        )
    values = {name: params[name] for name in params if params[name] != ""}
    return convert(values, model, strict=False)


def convert(value: Any, model: type[ModelT], *, strict: bool = True) -> ModelT:
    """`value` (parsed JSON, or query strings with `strict=False`) as `model`; a value the
    model refuses is InvalidInput naming the field, without repeating the value."""
    if isinstance(value, dict) and model.__struct_config__.forbid_unknown_fields:
        _refuse_unknown_fields(value, model)
    try:
        converted = msgspec.convert(value, model, strict=strict)
    except msgspec.ValidationError as exc:
        raise invalid_input(exc, model) from None
    return _in_utc(converted)


def _in_utc(value: ModelT) -> ModelT:
    """Times as UTC, as the vault keeps them: a time whose UTC is out of range (year 1
    with a positive offset) is refused here rather than failing in the database."""
    for name in value.__struct_fields__:
        moment = getattr(value, name)
        if isinstance(moment, datetime):
            try:
                setattr(value, name, moment.astimezone(UTC))
            except OverflowError:
                raise InvalidInput(f"{name} is out of range", field=name) from None
    return value


_LOCATION = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_NAMED_FIELD = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<name>[^`]+)`")
_TOP_FIELD = re.compile(r"^\.(?P<name>[^.\[]+)")
_ENUM_VALUE = re.compile(r"^Invalid enum value .*$", re.DOTALL)


def invalid_input(exc: msgspec.ValidationError, model: type[msgspec.Struct]) -> InvalidInput:
    """msgspec's message, with the field it names as `field` (the top-level field of a
    nested one: the path is in the message). msgspec quotes a refused enum value, which
    could be anything the client sent: that is replaced by the allowed values."""
    match = _LOCATION.match(str(exc))
    assert match is not None  # the pattern matches any text
    message, path = match["message"], match["path"] or ""
    top = _TOP_FIELD.match(path)
    named = _NAMED_FIELD.match(message)
    name = top["name"] if top else named["name"] if named else "(body)"
    if _ENUM_VALUE.match(message):
        message = (
            "must be one of: " + ", ".join(_allowed_values(model, name))
            if top
            else "not one of the allowed values"
        )
    location = path.removeprefix(".") if path else ""
    return InvalidInput(f"{location}: {message}" if location else message, field=name)


def _allowed_values(model: type[msgspec.Struct], name: str) -> list[str]:
    info = msgspec.inspect.type_info(model)
    assert isinstance(info, msgspec.inspect.StructType)
    for struct_field in info.fields:
        if struct_field.name == name:
            return _enum_values(struct_field.type)
    return []


def _enum_values(info: msgspec.inspect.Type) -> list[str]:
    if isinstance(info, msgspec.inspect.EnumType):
        return [str(member.value) for member in info.cls]
    if isinstance(info, msgspec.inspect.LiteralType):
        return [str(value) for value in info.values]
    if isinstance(info, msgspec.inspect.UnionType):
        return [value for member in info.types for value in _enum_values(member)]
    return []


# --- rendering -------------------------------------------------------------------------

_ENCODER = msgspec.json.Encoder()


class ModelResponse(Response):
    """A JSON answer rendered from a model; remembers which, for the declaration check.

    Kept by no cache unless its endpoint says otherwise (a public key set): an answer can
    name a subject, a decrypted filename, a hold's case reference, client IPs, and a copy
    in a browser's or a client library's cache is one the vault's erasure cannot reach
    (red team 20)."""

    media_type = JSON

    def __init__(
        self, content: bytes, model_type: type[msgspec.Struct], status: int,
        headers: Mapping[str, str] | None,
    ) -> None:  # fmt: skip
        super().__init__(content, status_code=status, headers=headers)
        self.headers.setdefault("cache-control", NO_STORE)
        self.model_type = model_type


def render(
    model: msgspec.Struct, status: int = 200, headers: Mapping[str, str] | None = None
) -> ModelResponse:
    return ModelResponse(_ENCODER.encode(model), type(model), status, headers)


def render_stored(
    document: bytes, model_type: type[msgspec.Struct], headers: Mapping[str, str] | None = None
) -> ModelResponse:
    """A JSON document the vault stored as `model_type` and sends exactly as stored (a
    signed receipt: decoding and encoding it again could drop what a later version signed)."""
    return ModelResponse(document, model_type, 200, headers)
