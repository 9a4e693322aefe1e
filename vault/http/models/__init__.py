"""The JSON API's wire format: every request body, query string and JSON answer as a
msgspec Struct. These models validate what clients send (vault/http/operation.py), type
what handlers pass to services and render back, and are the schemas of /openapi.json
(vault/http/openapi.py). Limits come from the named constants of vault/domain.

Request models refuse unknown fields where the API always has; answers list every field
as required (nullable ones say so), and a field only some answers carry is UNSET in the
others (`events` of a hold).
"""
