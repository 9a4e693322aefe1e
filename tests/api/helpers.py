"""Small helpers shared by the black-box API tests."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.support import Tenant, bearer


def from_ip(ip: str) -> dict[str, str]:
    """Act as client `ip`: the test server trusts X-Forwarded-For from 127.0.0.1."""
    return {"X-Forwarded-For": ip}


def create_key(
    http: httpx.Client, tenant: Tenant, scopes: list[str], **fields: Any
) -> dict[str, Any]:
    """Create a key with the tenant's admin key; returns the 201 body (with `secret`).
    Compliance and admin keys name an owner (a person of their own unless given)."""
    body = {"name": f"key for {'+'.join(scopes)}", "scopes": scopes, **fields}
    if {"compliance", "admin"} & set(scopes):
        body.setdefault("owner", f"person-{uuid.uuid4().hex[:8]}")
    response = http.post("/v1/api-keys", json=body, headers=tenant.auth())
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def auth(key: dict[str, Any], ip: str | None = None) -> dict[str, str]:
    headers = bearer(key["secret"])
    if ip is not None:
        headers.update(from_ip(ip))
    return headers


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Parse a time the API returned (accepting either Z or +00:00, so that tests about
    something else do not fail on the format; the format has its own tests)."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None, text
    return parsed


def access_log(http: httpx.Client, key: dict[str, Any], **params: Any) -> list[dict[str, Any]]:
    """Search the access log with `key` (from 127.0.0.1); `params` are the filters."""
    response = http.get("/v1/access-log", params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


# --- subjects, artefacts and records (appended with the subject routes) ------------------

import hashlib  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
from collections.abc import Callable, Iterable, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

MIB = 1024 * 1024


def ref_path(ref: str) -> str:
    """A subject reference as one path segment: everything percent-encoded, `/` too."""
    return urllib.parse.quote(ref, safe="")


def subject_url(ref: str, *parts: str) -> str:
    return "/".join([f"/v1/subjects/{ref_path(ref)}", *parts])


def artefact_url(ref: str, artefact_id: str, *parts: str) -> str:
    return subject_url(ref, "artefacts", artefact_id, *parts)


def record_url(ref: str, name: str) -> str:
    return subject_url(ref, "records", name)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class DataKeys:
    """One key per data scope of a tenant, plus an admin-only one."""

    ingest: dict[str, Any]
    read: dict[str, Any]
    compliance: dict[str, Any]
    admin: dict[str, Any]


def data_keys(http: httpx.Client, tenant: Tenant) -> DataKeys:
    return DataKeys(
        ingest=create_key(http, tenant, ["ingest"]),
        read=create_key(http, tenant, ["read"]),
        compliance=create_key(http, tenant, ["compliance"]),
        admin=create_key(http, tenant, ["admin"]),
    )


def upload(
    http: httpx.Client,
    key: dict[str, Any],
    ref: str,
    data: bytes | Iterable[bytes],
    category: str | None = "recording",
    *,
    content_type: str | None = None,
    filename: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST an artefact (raw body; a generator is sent chunked)."""
    sent = {**auth(key), **(headers or {})}
    if content_type is not None:
        sent["Content-Type"] = content_type
    if filename is not None:
        sent["X-Filename"] = filename
    params = {} if category is None else {"category": category}
    return http.post(subject_url(ref, "artefacts"), params=params, content=data, headers=sent)


def uploaded(
    http: httpx.Client,
    key: dict[str, Any],
    ref: str,
    data: bytes | Iterable[bytes],
    **kwargs: Any,
) -> dict[str, Any]:
    response = upload(http, key, ref, data, **kwargs)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def put_record(
    http: httpx.Client,
    key: dict[str, Any],
    ref: str,
    name: str,
    body: bytes,
    category: str | None = "account",
    content_type: str = "application/json",
) -> httpx.Response:
    params = {} if category is None else {"category": category}
    return http.put(
        record_url(ref, name),
        params=params,
        content=body,
        headers={**auth(key), "Content-Type": content_type},
    )


@dataclass
class Download:
    """A streamed GET: the status and headers, and the body if it arrived whole
    (`error` names the transport error that cut it short otherwise)."""

    status: int
    headers: httpx.Headers
    body: bytes | None
    error: str | None


def download(
    http: httpx.Client, url: str, headers: dict[str, str], method: str = "GET"
) -> Download:
    try:
        with http.stream(method, url, headers=headers) as response:
            try:
                body = response.read()
            except httpx.TransportError as exc:
                return Download(response.status_code, response.headers, None, repr(exc))
            return Download(response.status_code, response.headers, body, None)
    except httpx.TransportError as exc:
        return Download(0, httpx.Headers(), None, repr(exc))


def blob_root(settings: Any) -> Path:
    root: Path = settings.data_dir.resolve() / "blobs"
    return root


def blob_files(root: Path, needle: str | None = None) -> list[Path]:
    """Files under the blob store root whose path (relative to it) contains `needle`.

    What `root.rglob("*")` filtered by `is_file()` finds (symbolic links to directories
    not followed), from the directory entries' own types: the session vault's store
    holds every artefact its worker's tests uploaded, and a stat of each of them per
    call was seconds of CPU a run."""
    if not root.exists():
        return []
    prefix = len(str(root)) + 1
    found: list[Path] = []
    folders = [str(root)]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
                elif (needle is None or needle in entry.path[prefix:]) and _is_file(entry):
                    found.append(Path(entry.path))
    return sorted(found)


def _is_file(entry: os.DirEntry[str]) -> bool:
    """`Path.is_file()` of an entry: a symbolic link that loops or dangles is no file."""
    try:
        return entry.is_file()
    except OSError:
        return False


def object_files(root: Path) -> set[Path]:
    """Every blob file except the vault's own bookkeeping (access-log chain heads, the
    shred ledger): the files that hold tenant data or unfinished uploads."""
    return {
        path
        for path in blob_files(root)
        if not str(path.relative_to(root)).startswith(("audit-heads/", "ledger", "shred"))
    }


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def chunks_of(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def operator_key(server: Any, tenant: Tenant, scopes: list[str], owner: str) -> dict[str, Any]:
    """A key the operator issues (`datavault api-key create`): created by no other key, so
    its lineage is its own. Two-person hold releases need keys of independent lineages
    (two officers whose keys one admin minted are one person to the vault)."""
    import asyncio as _asyncio

    from vault.runtime import operator_context

    async def run() -> dict[str, Any]:
        async with operator_context(server.settings, server.database_url) as ctx:
            return await operator_key_in(ctx, tenant, scopes, owner)

    return _asyncio.run(run())


async def operator_key_in(
    ctx: Any, tenant: Tenant, scopes: list[str], owner: str
) -> dict[str, Any]:
    """`operator_key` through an open operator context (vault.runtime.OperatorContext):
    several keys, or a tenant and its keys, for one context's connections."""
    from vault.domain.scopes import Scope

    created = await ctx.api_keys.create(
        tenant.id, name=f"{owner}'s key", scopes=frozenset(Scope(s) for s in scopes),
        owner=owner,
    )  # fmt: skip
    return {"id": str(created.id), "prefix": created.prefix, "secret": created.token.reveal()}
