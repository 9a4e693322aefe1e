"""Red team 10: the per-process caches this round added cannot be grown by a client, and
keep nothing a client chose in a metric label (held; kept as regression tests).

- Metrics.observe_request binds one pair of metric children per (method, route,
  status), at most 4,096: a client sending unknown methods and paths by the hundred adds
  no series of its own (methods outside the known ones are "other", paths that match
  no route are "(unmatched)"), and nothing of the path it sent appears in /metrics.
- AccessLogWriter.ip_hash keeps the keyed hash of at most 1,024 client addresses
  (emptied when full): many addresses never grow it past that, and an address's hash
  is its own whatever was cached before it (never another address's).
"""

from __future__ import annotations

import os
import re
import uuid
from typing import cast

from crypto.mac import keyed_hash
from crypto.secrets import SecretBytes
from tests.support import ServerThread
from vault.db.database import Database
from vault.services.access_log import IP_HASHES_KEPT, AccessLogWriter


def _request_series(metrics: str) -> set[str]:
    return {
        line.split(" ")[0]
        for line in metrics.splitlines()
        if line.startswith("datavault_http_requests_total{")
    }


def test_unknown_methods_and_paths_add_no_series_and_no_label_of_the_clients(
    server: ServerThread,
) -> None:
    marker = f"rt10{uuid.uuid4().hex[:12]}"
    with server.client() as http:
        # One of each kind first, so their series exist before the burst is counted.
        http.request("PROPFIND", f"/v1/{marker}-warmup")
        http.get(f"/{marker}-warmup")
        http.request("BREW", "/")
        before = _request_series(http.get("/metrics").text)
        for index in range(150):
            http.request("PROPFIND", f"/v1/{marker}-{index}/x?y={index}")
            http.get(f"/{marker}/{index}", headers={"X-Forwarded-For": f"10.9.{index}.1"})
            http.request("BREW", f"/{marker}-{index}")
        after_text = http.get("/metrics").text
    after = _request_series(after_text)
    assert marker not in after_text
    assert len(after - before) <= 3, sorted(after - before)  # /metrics' own, at most
    for series in after:
        method = re.search(r'method="([^"]*)"', series)
        assert method is not None
        assert method.group(1) in {
            "GET",
            "HEAD",
            "POST",
            "PUT",
            "PATCH",
            "DELETE",
            "OPTIONS",
            "other",
        }


def test_the_ip_hash_cache_stays_bounded_and_never_answers_for_another_address() -> None:
    key = SecretBytes(os.urandom(32))
    writer = AccessLogWriter(cast(Database, None), key)
    addresses: list[str | None] = [
        f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}" for n in range(5000)
    ]
    addresses += [None, "", "2001:db8::1"]
    largest = 0
    for address in addresses:
        got = writer.ip_hash(address)
        assert got == keyed_hash(key, (address or "").encode())
        largest = max(largest, len(writer._ip_hashes))
    assert largest <= IP_HASHES_KEPT
    # Asked again after the cache was emptied and refilled: still each its own.
    for address in addresses[:50] + addresses[-50:]:
        assert writer.ip_hash(address) == keyed_hash(key, (address or "").encode())
