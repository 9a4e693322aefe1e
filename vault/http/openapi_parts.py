"""Building blocks of the OpenAPI document: operations, parameters, common schemas."""

from __future__ import annotations

from typing import Any

PROBLEM = {"$ref": "#/components/responses/Problem"}
_JSON = "application/json"


def _op(
    summary: str,
    *,
    scope: str | None,
    ok: int = 200,
    ok_schema: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    errors: tuple[int, ...] = (),
    description: str = "",
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(ok): {"description": "Success"}
        if ok_schema is None
        else {"description": "Success", "content": {_JSON: {"schema": ok_schema}}}
    }
    codes = set(errors)
    if scope:
        codes |= {401, 403, 429, 503}
    for code in sorted(codes):
        responses[str(code)] = PROBLEM
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if description:
        operation["description"] = description
    if scope:
        operation["security"] = [{"apiKey": []}]
        operation["x-required-scope"] = scope
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {_JSON: {"schema": body}}}
    if params:
        operation["parameters"] = params
    return operation


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_STR = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_UUID = {"type": "string", "format": "uuid"}

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
