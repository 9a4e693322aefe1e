"""`Client`: one vault, one API key, every operation the key's scopes allow."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from datavault_client import _routes as R
from datavault_client._transport import Transport, json_of
from datavault_client.admin import ApiKeys, TenantAdmin
from datavault_client.artefacts import Artefacts
from datavault_client.compliance import AccessLog, Disclosures, Holds
from datavault_client.erasures import Erasures
from datavault_client.errors import UnexpectedResponse
from datavault_client.retry import RetryPolicy
from datavault_client.secret import Secret
from datavault_client.subjects import Records, Subjects
from datavault_client.webhook_endpoints import Webhooks

# Connect quickly; a read may wait as long as the vault takes to produce the next chunk of
# a large download or to shred (an upload's answer comes after its last byte is sealed).
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


class Client:
    """A client of one datavault deployment with one API key.

        with Client("https://vault.example.com", api_key=os.environ["DATAVAULT_KEY"]) as vault:
            artefact = vault.artefacts.upload("user-42", "call.webm", category="recording",
                                              content_type="video/webm")

    `base_url` is where the API is served (`DATAVAULT_PUBLIC_URL`). `retry` says how often
    and how patiently safe requests are tried again (see `RetryPolicy`). `http` lets a
    caller bring its own configured `httpx.Client` (proxies, TLS settings); the client
    then closes it with itself.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | Secret | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        http: httpx.Client | None = None,
    ) -> None:
        key = Secret(api_key) if isinstance(api_key, str) else api_key
        self._transport = Transport(
            base_url,
            key,
            # No redirects: one would carry the Authorization header to wherever it points.
            http=http or httpx.Client(timeout=timeout, follow_redirects=False),
            retry=retry or RetryPolicy(),
        )
        self.subjects = Subjects(self._transport)
        self.artefacts = Artefacts(self._transport)
        self.records = Records(self._transport)
        self.erasures = Erasures(self._transport)
        self.holds = Holds(self._transport)
        self.disclosures = Disclosures(self._transport)
        self.access_log = AccessLog(self._transport)
        self.api_keys = ApiKeys(self._transport)
        self.tenant = TenantAdmin(self._transport)
        self.webhooks = Webhooks(self._transport)

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    def receipt_keys(self) -> dict[str, Any]:
        """The deployment's JWK set for receipts (`/.well-known/jwks.json`, no key needed):
        keep a copy to verify receipts offline."""
        keys = json_of(self._transport.call(R.JWKS), R.JWKS)
        if not isinstance(keys, dict) or not isinstance(keys.get("keys"), list):
            raise UnexpectedResponse(f"{R.JWKS}: not a JWK set")
        return keys

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"
