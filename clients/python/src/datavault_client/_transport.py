"""The one place requests are sent: authentication, the Idempotency-Key, retries with
backoff where they are safe (retry.py), and problem+json answers turned into typed
errors (errors.py)."""

from __future__ import annotations

import email.utils
import json
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from datavault_client._routes import Operation
from datavault_client.errors import ConnectionFailed, UnexpectedResponse, problem_from_body
from datavault_client.retry import RETRY_STATUSES, RetryPolicy
from datavault_client.secret import Secret

USER_AGENT: Final = "datavault-client/0.1.0"
# Failures before a single byte reached the vault: safe to try again for any request.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class Body:
    """A request body the transport may have to send more than once."""

    length: int | None = None
    content_type: str | None = None

    @property
    def replayable(self) -> bool:
        return True

    def chunks(self) -> bytes | Iterator[bytes]:
        raise NotImplementedError


class JsonBody(Body):
    content_type = "application/json"

    def __init__(self, value: object) -> None:
        self._data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        self.length = len(self._data)

    def chunks(self) -> bytes:
        return self._data


@dataclass
class _Call:
    """One call of an operation: what stays the same over its retries."""

    operation: Operation
    url: str
    params: Mapping[str, str]
    headers: dict[str, str]
    body: Body | None
    request_id: str


class Transport:
    def __init__(
        self,
        base_url: str,
        api_key: Secret | None,
        *,
        http: httpx.Client,
        retry: RetryPolicy,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._http = http
        self.retry = retry
        self.sleep = sleep

    def close(self) -> None:
        self._http.close()

    def call(
        self,
        operation: Operation,
        path: Mapping[str, str] | None = None,
        *,
        params: Mapping[str, object] | None = None,
        body: Body | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send `operation` until it gets an answer worth returning; raise the typed
        problem for an error status. With `stream`, the 2xx response comes back unread and
        the caller closes it."""
        call = self._prepare(operation, path or {}, params, body, headers, idempotency_key)
        response = self._send_with_retries(call, stream=stream)
        if response.status_code >= 400:
            raise self._problem(call, response)
        return response

    def _prepare(
        self,
        operation: Operation,
        path: Mapping[str, str],
        params: Mapping[str, object] | None,
        body: Body | None,
        headers: Mapping[str, str] | None,
        idempotency_key: str | None,
    ) -> _Call:
        sent = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self._api_key is not None and operation.authenticated:
            sent["Authorization"] = f"Bearer {self._api_key.reveal()}"
        if body is not None:
            if body.content_type is not None:
                sent["Content-Type"] = body.content_type
            if body.length is not None:
                sent["Content-Length"] = str(body.length)
        if operation.creates:
            # One key per call, the same over its retries: a repeat gets the first answer.
            sent["Idempotency-Key"] = idempotency_key or f"dvc-{uuid.uuid4()}"
        sent.update(headers or {})
        return _Call(
            operation=operation,
            url=self.base_url + operation.path(path),
            params=_query(params),
            headers=sent,
            body=body,
            request_id=uuid.uuid4().hex,
        )

    def _send_with_retries(self, call: _Call, *, stream: bool) -> httpx.Response:
        operation = call.operation
        maybe_done = False  # an earlier try may have reached the vault and done it
        attempt = 0
        while True:
            attempt += 1
            headers = {**call.headers, "X-Request-Id": _attempt_id(call.request_id, attempt)}
            request = self._http.build_request(
                operation.method,
                call.url,
                params=call.params,
                headers=headers,
                content=call.body.chunks() if call.body is not None else None,
            )
            may_repeat = call.body is None or call.body.replayable
            try:
                response = self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                safe = isinstance(exc, _NOT_SENT) or operation.retry_safe
                wait = self.retry.wait_for(attempt, None) if safe and may_repeat else None
                if wait is None:
                    raise ConnectionFailed(
                        f"{operation}: {type(exc).__name__} after {attempt} tries"
                    ) from None
                maybe_done = maybe_done or not isinstance(exc, _NOT_SENT)
                self.sleep(wait)
                continue
            wait = self._wait_after(call, response, attempt, may_repeat)
            if wait is not None:
                response.close()
                self.sleep(wait)
                continue
            if operation.deletes and maybe_done and response.status_code in (404, 410):
                # The earlier try deleted it and its answer was lost: done, not missing.
                response.close()
                return httpx.Response(204, request=request)
            if not stream or response.status_code >= 400:
                response.read()
                response.close()
            return response

    def _wait_after(
        self, call: _Call, response: httpx.Response, attempt: int, may_repeat: bool
    ) -> float | None:
        if not (call.operation.retry_safe and may_repeat):
            return None
        status = response.status_code
        if status in RETRY_STATUSES:
            return self.retry.wait_for(attempt, retry_after(response.headers))
        if status == 409 and call.operation.creates and attempt > 1:
            # The try before may still be running under the same Idempotency-Key ("still
            # being processed; retry later"); a real conflict stays one and is raised
            # once the tries are used up.
            return self.retry.wait_for(attempt, None)
        return None

    def _problem(self, call: _Call, response: httpx.Response) -> Exception:
        body: object = None
        if "json" in response.headers.get("content-type", ""):
            try:
                body = response.json()
            except ValueError:
                body = None
        return problem_from_body(
            response.status_code,
            body,
            operation=str(call.operation),
            request_id=response.headers.get("x-request-id"),
            retry_after=retry_after(response.headers),
        )


def json_of(response: httpx.Response, operation: Operation) -> Any:
    try:
        return response.json()
    except ValueError:
        raise UnexpectedResponse(f"{operation}: the answer is not JSON") from None


def retry_after(headers: httpx.Headers) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _attempt_id(request_id: str, attempt: int) -> str:
    """The vault logs X-Request-Id: every try of one call shares its stem."""
    return request_id if attempt == 1 else f"{request_id}.{attempt}"


def _query(params: Mapping[str, object] | None) -> dict[str, str]:
    """Query parameters, leaving out the ones not given (None)."""
    out: dict[str, str] = {}
    for name, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, datetime):
            out[name] = format_time(value)
        else:
            out[name] = str(value)
    return out


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC ending in Z, as the vault writes times; a naive datetime is
    refused rather than guessed."""
    if value.tzinfo is None:
        raise ValueError("give times with a time zone (e.g. datetime.now(UTC))")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def quote_segment(value: str) -> str:
    """One path segment: everything percent-encoded, `/` included (API.md: `{ref}`)."""
    return urllib.parse.quote(value, safe="")
