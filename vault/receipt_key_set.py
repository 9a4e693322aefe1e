"""A running deployment's receipt key set, fetched for `datavault receipt verify`.

Only from a URL the operator names (--url, or DATAVAULT_PUBLIC_URL), never from the
`issuer` inside the receipt being checked: a forged receipt would name the forger's own
keys. Use https: the key set is what the signature is checked against.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from vault.cli.errors import CommandError
from vault.services.receipt_verify import load_receipt_json

RECEIPT_KEYS_PATH = "/v1/receipt-keys"
FETCH_TIMEOUT_SECONDS = 10
# A JWK set of a few Ed25519 keys is a few hundred bytes per key; anything this large is
# not one.
MAX_KEY_SET_BYTES = 1024 * 1024

NO_KEY_SET = (
    "receipt verify needs the deployment's receipt keys: pass --jwks FILE (the JSON of "
    f"{RECEIPT_KEYS_PATH} of the deployment), or --url URL of the running deployment "
    "(or set DATAVAULT_PUBLIC_URL)"
)


def fetch_receipt_keys(base_url: str | None) -> Any:
    """The parsed JWK set at `base_url` + /v1/receipt-keys; CommandError (exit 2) when no
    URL is given or nothing usable answers there."""
    if not base_url:
        raise CommandError(NO_KEY_SET)
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CommandError(f"--url must be an http(s) URL of the deployment, not {base_url!r}")
    url = base_url.rstrip("/") + RECEIPT_KEYS_PATH
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as answer:  # noqa: S310
            body = answer.read(MAX_KEY_SET_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise CommandError(f"{url} answered {exc.code}: no receipt key set there") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CommandError(f"cannot fetch the receipt key set from {url}: {reason}") from None
    if len(body) > MAX_KEY_SET_BYTES:
        raise CommandError(f"{url} answered more than {MAX_KEY_SET_BYTES} bytes")
    try:
        key_set = load_receipt_json(body)
    except ValueError:
        raise CommandError(f"{url} did not answer a JSON key set") from None
    if not isinstance(key_set, dict) or not isinstance(key_set.get("keys"), list):
        raise CommandError(f'{url} did not answer a JWK set ({{"keys": [...]}})')
    return key_set
