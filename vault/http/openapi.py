"""The OpenAPI 3.1 description of the JSON API, and the /docs page rendered from it.

Built from the route table (where each operation lives) and each handler's declaration
(vault/http/operation.py: what it reads, who may call it, what it answers); the schemas
are the msgspec models themselves (vault/http/models). Nothing here is written by hand
per operation, so the document cannot fall behind the code.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec
from starlette.routing import BaseRoute

from vault.http.models.common import Problem
from vault.http.operation import JSON, Answer, Header, Operation, Tag, operation_of
from vault.http.problems import MEDIA_TYPE as PROBLEM_MEDIA
from vault.http.routing import MethodRoute

_COMPONENTS = "#/components/schemas/{name}"
PROBLEM = {"$ref": "#/components/responses/Problem"}
_METHODS = ("get", "head", "put", "post", "patch", "delete")

TAGS = {
    Tag.OPERATIONS: "Health, readiness, metrics and this description (no authentication)",
    Tag.TENANT: "The tenant, its settings and its closure (admin scope)",
    Tag.API_KEYS: "API keys (admin scope)",
    Tag.ACCESS_LOG: "Every request, searchable (compliance scope)",
    Tag.SUBJECTS: "Data subjects: status, export, restriction of processing",
    Tag.ARTEFACTS: "Large binary objects such as call recordings, streamed",
    Tag.RECORDS: "Small JSON values, at most 1 MiB each",
    Tag.ERASURES: "Erasure instructions, their signed receipts and the receipt keys",
    Tag.HOLDS: "Legal holds (compliance scope)",
    Tag.DISCLOSURES: "Records of data handed to third parties (compliance scope)",
    Tag.WEBHOOKS: "Webhook endpoints, their deliveries and replays (admin scope)",
}

# Path parameters, by name, wherever a route template has them.
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "ref": {
        "schema": {"type": "string"},
        "description": "The tenant's id for the data subject, percent-encoded (/ as %2F)",
    },
    "name": {
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,200}$"},
        "description": "The record's name",
    },
    "version": {"schema": {"type": "integer", "minimum": 1}, "description": "A version"},
    "token": {
        "schema": {"type": "string"},
        "description": "The playback link's token: the credential, as the minting answer's "
        "url has it",
    },
    **{
        name: {"schema": {"type": "string", "format": "uuid"}, "description": f"The {what}'s id"}
        for name, what in (
            ("key_id", "API key"),
            ("artefact_id", "artefact"),
            ("hold_id", "hold"),
            ("erasure_id", "erasure"),
            ("disclosure_id", "disclosure"),
            ("webhook_id", "webhook endpoint"),
            ("delivery_id", "delivery"),
        )
    },
}
_PATH_NAMES = re.compile(r"{(\w+)}")

IDEMPOTENCY_HEADER = Header(
    "Idempotency-Key",
    "Kept 24 hours per API key: the same key with the same request returns the first answer "
    "(header Idempotent-Replayed: true) and does nothing again; with another request, 422; "
    "while the first is still running, 409.",
    {"type": "string", "minLength": 1, "maxLength": 255},
)


def described_operations(
    routes: Iterable[BaseRoute],
) -> list[tuple[str, str, Operation, Callable[..., Any]]]:
    """(path, method, declaration, endpoint) of every declared operation, in route order.
    HEAD is described where a route names a handler for it, not where Starlette answers
    HEAD for a GET."""
    found = []
    for route in routes:
        if not isinstance(route, MethodRoute):
            continue
        for method, endpoint in route.handlers.items():
            declared = operation_of(endpoint)
            if declared is not None:
                found.append((route.path, method.lower(), declared, endpoint))
    return found


def openapi_document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    operations = described_operations(routes)
    query_models = {op.query for _, _, op, _ in operations if op.query is not None}
    models: set[type[msgspec.Struct]] = {Problem, *query_models}
    for _, _, op, _ in operations:
        models |= {a.model for a in op.answers.values() if a.model is not None}
        if op.body is not None:
            models.add(op.body)
    ordered = sorted(models, key=lambda model: model.__name__)
    _, schemas = msgspec.json.schema_components(ordered, ref_template=_COMPONENTS)
    # A query model's fields become parameters; the model itself is no schema of its own.
    query_fields = {model: schemas[model.__name__] for model in query_models}
    for model in query_models:
        del schemas[model.__name__]
    paths: dict[str, dict[str, Any]] = {}
    for path, method, op, endpoint in operations:
        idempotent = bool(endpoint.__dict__.get("idempotent"))
        paths.setdefault(path, {})[method] = _operation(path, op, query_fields, idempotent)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "datavault",
            "version": "1",
            "description": (
                "Multi-tenant vault for end-user data with deletion guarantees. Errors are "
                "RFC 9457 problem+json. Authenticate with 'Authorization: Bearer <api key>'. "
                "x-required-scope names the scope an operation needs ('a or b': either "
                "will do); the compliance scope also reads everything read may."
            ),
        },
        "tags": [{"name": tag.value, "description": text} for tag, text in TAGS.items()],
        "paths": paths,
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Problem": {
                    "description": "RFC 9457 problem details",
                    "content": {PROBLEM_MEDIA: {"schema": _ref(Problem)}},
                }
            },
            "schemas": dict(sorted(schemas.items())),
        },
    }


def openapi_json_bytes(routes: Sequence[BaseRoute]) -> bytes:
    return json.dumps(openapi_document(routes), ensure_ascii=False).encode()


def _ref(model: type[msgspec.Struct]) -> dict[str, str]:
    return {"$ref": _COMPONENTS.format(name=model.__name__)}


def _operation(
    path: str,
    op: Operation,
    query_fields: dict[type[msgspec.Struct], dict[str, Any]],
    idempotent: bool,
) -> dict[str, Any]:
    described: dict[str, Any] = {"operationId": op.operation_id, "tags": [op.tag.value]}
    described["summary"] = op.summary
    if op.description:
        described["description"] = op.description
    if op.scope:
        described["security"] = [{"apiKey": []}]
        described["x-required-scope"] = " or ".join(scope.value for scope in op.scope)
    parameters = [_path_parameter(name) for name in _PATH_NAMES.findall(path)]
    if op.query is not None:
        parameters += _query_parameters(query_fields[op.query])
    headers = [*op.headers, *([IDEMPOTENCY_HEADER] if idempotent else [])]
    parameters += [_header_parameter(header) for header in headers]
    if parameters:
        described["parameters"] = parameters
    if op.body is not None:
        described["requestBody"] = {
            "required": op.body_required,
            "content": {JSON: {"schema": _ref(op.body)}},
        }
    elif op.raw_body is not None:
        described["requestBody"] = {
            "required": True,
            "description": op.raw_body.description,
            "content": {op.raw_body.media: {"schema": dict(op.raw_body.schema)}},
        }
    described["responses"] = _responses(op, idempotent)
    return described


def _path_parameter(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, **PATH_PARAMETERS[name]}


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", ()))
    parameters = []
    for name, field_schema in schema["properties"].items():
        field_schema, description = _parameter_schema(field_schema)
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": field_schema,
                "description": description,
            }
        )
    return parameters


def _parameter_schema(schema: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A query field's schema as a parameter's, and its description: an optional
    parameter is left out rather than null, so `X | None` is just X."""
    schema = dict(schema)
    members = schema.pop("anyOf", None)
    if members is not None:
        kept = [m for m in members if m != {"type": "null"}]
        if schema.get("default", ...) is None:
            del schema["default"]
        schema = {**(kept[0] if len(kept) == 1 else {"anyOf": kept}), **schema}
    description = schema.pop("description", "")
    return schema, description


def _header_parameter(header: Header) -> dict[str, Any]:
    return {
        "name": header.name,
        "in": "header",
        "required": False,
        "schema": dict(header.schema),
        "description": header.description,
    }


def _responses(op: Operation, idempotent: bool) -> dict[str, Any]:
    responses: dict[str, Any] = {str(code): _answer(a) for code, a in op.answers.items()}
    # The problems the wrapper itself answers, beside the ones the operation declares.
    codes = set(op.errors)
    if op.scope:
        codes |= {401, 403, 429, 503}
    if op.body is not None or (op.raw_body is not None and op.raw_body.media == JSON):
        codes |= {400, 413, 415, 422}
    if op.query is not None or op.reads_ref:
        codes |= {422}
    if idempotent:
        codes |= {409, 422}
    for code in codes:
        responses.setdefault(str(code), PROBLEM)
    return dict(sorted(responses.items()))


def _answer(answer: Answer) -> dict[str, Any]:
    response: dict[str, Any] = {"description": answer.description}
    if answer.headers:
        response["headers"] = {
            h.name: {"schema": dict(h.schema), "description": h.description} for h in answer.headers
        }
    schema = _ref(answer.model) if answer.model is not None else answer.schema
    if schema is not None:
        response["content"] = {answer.media: {"schema": dict(schema)}}
    return response


# --- the /docs page ----------------------------------------------------------------------


def render_docs_page(routes: Sequence[BaseRoute]) -> str:
    """A self-contained page (no scripts, no CDN) listing every operation, from the same
    document /openapi.json serves."""
    document = openapi_document(routes)
    schemas = document["components"]["schemas"]
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>datavault API</title><style>body{font:15px/1.5 system-ui,sans-serif;",
        "max-width:60rem;margin:2rem auto;padding:0 1rem}code,pre{background:#f4f4f4}",
        "h3{margin-bottom:.2rem}.m{font-weight:bold;text-transform:uppercase}</style></head>",
        f"<body><h1>{esc(document['info']['title'])} API v{esc(document['info']['version'])}</h1>",
        f"<p>{esc(document['info']['description'])}</p>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1).</p>",
    ]
    for path, item in document["paths"].items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            scope = operation.get("x-required-scope")
            parts.append(
                f"<h3 id='{esc(operation['operationId'])}'><span class='m'>{esc(method)}</span> "
                f"<code>{esc(path)}</code></h3>"
                f"<p>{esc(operation['summary'])} (<code>{esc(operation['operationId'])}</code>)"
                + (f" — scope <code>{esc(scope)}</code>" if scope else " — no authentication")
                + "</p>"
            )
            if operation.get("description"):
                parts.append(f"<p>{esc(operation['description'])}</p>")
            for param in operation.get("parameters", []):
                where, name = esc(param["in"]), esc(param["name"])
                parts.append(f"<div>{where} <code>{name}</code>: {esc(param['description'])}</div>")
            parts.extend(_body_html(operation.get("requestBody"), schemas))
            codes = ", ".join(
                _answer_name(code, answer) for code, answer in operation["responses"].items()
            )
            parts.append(f"<div>Responses: {esc(codes)}</div>")
    parts.append("</body></html>")
    return "".join(parts)


def _answer_name(code: str, answer: dict[str, Any]) -> str:
    """ "200 Hold" for a model's answer, "404" for a problem or a body of its own kind."""
    for media in answer.get("content", {}).values():
        target = media.get("schema", {}).get("$ref", "")
        if target.startswith("#/components/schemas/"):
            return f"{code} {target.rsplit('/', 1)[1]}"
    return code


def _body_html(body: dict[str, Any] | None, schemas: dict[str, Any]) -> list[str]:
    """A JSON body as its schema (the model's, resolved); any other as its media types
    and description."""
    if not body:
        return []
    content = body["content"]
    optional = "" if body.get("required") else " (optional)"
    if JSON in content:
        schema = content[JSON]["schema"]
        name = schema.get("$ref", "").rsplit("/", 1)[-1]
        shown = json.dumps(schemas.get(name, schema), indent=2)
        return [f"<div>JSON body{optional}:</div><pre>{html.escape(shown)}</pre>"]
    media = ", ".join(content)
    text = body.get("description", "")
    return [f"<div>Body{optional}: <code>{html.escape(media)}</code> {html.escape(text)}</div>"]
