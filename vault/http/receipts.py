"""`GET /.well-known/jwks.json` and `GET /v1/receipt-keys` (no auth): the public keys
that verify erasure receipts, as one JWK set."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vault.http.render import json_response
from vault.http.state import vault_state
from vault.services.receipts import published_keys

# Keys are added rarely and never removed (retired keys stay published), so caches may
# keep the set for a few minutes.
CACHE_CONTROL = "public, max-age=300"


async def receipt_keys(request: Request) -> Response:
    keys = await published_keys(vault_state(request).db)
    return json_response(keys, headers={"Cache-Control": CACHE_CONTROL})
