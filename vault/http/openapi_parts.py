"""Building blocks of the OpenAPI document: operations, parameters, common schemas."""

from __future__ import annotations

from typing import Any

PROBLEM = {"$ref": "#/components/responses/Problem"}
PROBLEM_SCHEMA = {"$ref": "#/components/schemas/Problem"}
_JSON = "application/json"
# Raw bytes of any media type: an upload's body, an artefact's plaintext, an export.
BINARY = {"type": "string", "format": "binary"}


def answer(
    description: str,
    schema: dict[str, Any] | None = None,
    *,
    media: str = _JSON,
    headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One response object: a description, its body (if any) and its headers."""
    response: dict[str, Any] = {"description": description}
    if headers:
        response["headers"] = headers
    if schema is not None:
        response["content"] = {media: {"schema": schema}}
    return response


def header(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A response header object."""
    return {"schema": schema, "description": description}


def location(path: str) -> dict[str, Any]:
    """The Location header of an answer that created a resource at `path`."""
    return {"Location": header({"type": "string"}, f"The new resource: {path}")}


def _op(
    summary: str,
    *,
    scope: str | tuple[str, ...] | None,
    ok: int = 200,
    ok_schema: dict[str, Any] | None = None,
    answers: dict[int, dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    body_required: bool = True,
    params: list[dict[str, Any]] | None = None,
    errors: tuple[int, ...] = (),
    description: str = "",
) -> dict[str, Any]:
    """An operation. `scope`: the scope it needs, or a tuple of scopes any one of which
    will do (shown as "a or b"). `answers`: success responses beside (or instead of) the
    plain `ok` one. `body`: a JSON request body's schema, or a whole request body object
    (one with "content") for other media types."""
    responses: dict[str, Any] = {
        str(ok): answer("Success") if ok_schema is None else answer("Success", ok_schema)
    }
    for code, response in (answers or {}).items():
        responses[str(code)] = response
    codes = set(errors)
    if scope:
        codes |= {401, 403, 429, 503}
    for code in sorted(codes):
        responses.setdefault(str(code), PROBLEM)
    operation: dict[str, Any] = {"summary": summary, "responses": dict(sorted(responses.items()))}
    if description:
        operation["description"] = description
    if scope:
        operation["security"] = [{"apiKey": []}]
        operation["x-required-scope"] = scope if isinstance(scope, str) else " or ".join(scope)
    if body is not None:
        operation["requestBody"] = (
            body
            if "content" in body
            else {"required": body_required, "content": {_JSON: {"schema": body}}}
        )
    if params:
        operation["parameters"] = params
    return operation


def _query(
    name: str, schema: dict[str, Any], description: str, *, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


def _header_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_STR = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_UUID = {"type": "string", "format": "uuid"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}

_REF = {
    "name": "ref",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The tenant's id for the data subject, percent-encoded (/ as %2F)",
}
_PAGING = [
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "Rows (50)"),
    _query("cursor", _STR, "next_cursor of the previous page"),
]


def _list_page(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": item},
            "next_cursor": {"type": ["string", "null"]},
        },
    }
