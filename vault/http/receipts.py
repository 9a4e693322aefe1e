"""`GET /.well-known/jwks.json` and `GET /v1/receipt-keys` (no auth): the public keys
that verify erasure receipts, as one JWK set."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vault.http.models.erasures import JwkSet
from vault.http.operation import Tag, ok, operation, render
from vault.http.state import vault_state
from vault.services.receipts import published_keys

# Keys are added rarely and never removed (retired keys stay published), so caches may
# keep the set for a few minutes.
CACHE_CONTROL = "public, max-age=300"


@operation(
    "listReceiptKeys", tag=Tag.ERASURES,
    summary="Public keys that verify erasure receipts: a JWK set, retired keys included",
    scope=None, answers={200: ok(JwkSet)},
)  # fmt: skip
async def receipt_keys(request: Request) -> Response:
    keys = await published_keys(vault_state(request).db)
    return render(JwkSet.of(keys), headers={"Cache-Control": CACHE_CONTROL})


@operation(
    "getJwks", tag=Tag.ERASURES,
    summary="The same JWK set as /v1/receipt-keys, where JOSE libraries look for it: under "
    "the receipts' issuer (DATAVAULT_PUBLIC_URL)",
    scope=None, answers={200: ok(JwkSet)},
)  # fmt: skip
async def jwks(request: Request) -> Response:
    return await receipt_keys(request)
