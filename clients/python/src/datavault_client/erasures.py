"""Erasure instructions: request, read, list, cancel, follow their changes, and fetch
their signed receipts (verify them offline with `datavault_client.verify_receipt`)."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from datetime import datetime, timedelta
from typing import Final

from datavault_client import _routes as R
from datavault_client._fields import Fields
from datavault_client._transport import JsonBody, Transport, json_of
from datavault_client.models import Erasure, ErasureRequested, Page, ReceiptDocument
from datavault_client.models.erasure import CANCELLED, WITH_RECEIPT

# How far back each poll of a follower looks again. A change is stamped with the time its
# transaction started and becomes visible when it commits, so it can appear after
# changes stamped later; the vault's transactions take well under a second, and this
# leaves a wide margin for a slow one. Re-read changes are recognised and skipped.
DEFAULT_OVERLAP: Final = timedelta(seconds=60)
# The page size a follower asks for (the vault's maximum).
_FOLLOW_PAGE: Final = 500


class Erasures:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def request(
        self, ref: str, *, reason: str | None = None, reference: str | None = None,
        idempotency_key: str | None = None,
    ) -> ErasureRequested:  # fmt: skip
        """Erase subject `ref`. `.created` is False when the subject's open erasure
        answered instead of a new one. `reason` and `reference` are kept as the compliance
        record: a ticket id, never personal data."""
        body = {k: v for k, v in {"reason": reason, "reference": reference}.items() if v}
        response = self._t.call(
            R.REQUEST_ERASURE, {"ref": ref}, body=JsonBody(body), idempotency_key=idempotency_key
        )
        fields = Fields(json_of(response, R.REQUEST_ERASURE), "erasure")
        return ErasureRequested.parse(fields, created=response.status_code == 202)

    def get(self, erasure_id: str) -> Erasure:
        response = self._t.call(R.GET_ERASURE, {"erasure_id": erasure_id})
        return Erasure.parse(Fields(json_of(response, R.GET_ERASURE), "erasure"))

    def list(
        self, *, status: str | None = None, subject_ref: str | None = None,
        updated_since: datetime | None = None, limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Erasure]:  # fmt: skip
        """Newest first; with `updated_since`, those changed at or after it, oldest change
        first (page on with `next_cursor`)."""
        params = {"status": status, "subject_ref": subject_ref, "updated_since": updated_since,
                  "limit": limit, "cursor": cursor}  # fmt: skip
        response = self._t.call(R.LIST_ERASURES, params=params)
        return Page.parse(json_of(response, R.LIST_ERASURES), "erasures", Erasure.parse)

    def iterate(
        self, *, status: str | None = None, subject_ref: str | None = None,
        updated_since: datetime | None = None,
    ) -> Iterator[Erasure]:  # fmt: skip
        """Every erasure the filters select, page after page."""
        cursor = None
        while True:
            page = self.list(status=status, subject_ref=subject_ref, updated_since=updated_since,
                             cursor=cursor, limit=_FOLLOW_PAGE)  # fmt: skip
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def follower(
        self, since: datetime, *, status: str | None = None,
        overlap: timedelta = DEFAULT_OVERLAP,
    ) -> ErasureFollower:  # fmt: skip
        return ErasureFollower(self, since, status=status, overlap=overlap)

    def follow(
        self, since: datetime, *, status: str | None = None, poll_interval: float = 5.0,
        overlap: timedelta = DEFAULT_OVERLAP,
    ) -> Iterator[Erasure]:  # fmt: skip
        """Every change of every erasure from `since` on, as it happens, oldest first:
        polls every `poll_interval` seconds and never ends (break out of it). Each change
        is delivered once per process; see `ErasureFollower` for restarts."""
        follower = self.follower(since, status=status, overlap=overlap)
        while True:
            yield from follower.poll()
            self._t.sleep(poll_interval)

    def cancel(self, erasure_id: str) -> Erasure:
        """Only before `not_before` (the grace period); after it, `Conflict`."""
        response = self._t.call(R.CANCEL_ERASURE, {"erasure_id": erasure_id})
        return Erasure.parse(Fields(json_of(response, R.CANCEL_ERASURE), "erasure"))

    def release_brake(self, erasure_id: str) -> Erasure:
        """Admin: let an erasure the rate brake held back run after the grace period."""
        response = self._t.call(R.RELEASE_ERASURE_BRAKE, {"erasure_id": erasure_id})
        return Erasure.parse(Fields(json_of(response, R.RELEASE_ERASURE_BRAKE), "erasure"))

    def receipt(self, erasure_id: str) -> ReceiptDocument:
        """The signed receipt: final once completed, interim while held (`Conflict`
        before). Verify it with `verify_receipt(doc.document, jwks)`."""
        response = self._t.call(R.GET_RECEIPT, {"erasure_id": erasure_id})
        return ReceiptDocument.parse(Fields(json_of(response, R.GET_RECEIPT), "receipt"))

    def wait(
        self, erasure_id: str, *, timeout: float = 300.0, poll_interval: float = 2.0,
        until: Collection[str] = WITH_RECEIPT | {CANCELLED},
    ) -> Erasure:  # fmt: skip
        """Poll until the erasure's status is one of `until` (by default: completed, held
        or cancelled) and return it; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            erasure = self.get(erasure_id)
            if erasure.status in until:
                return erasure
            if time.monotonic() >= deadline:
                raise TimeoutError(f"erasure still {erasure.status} after {timeout:g} s")
            self._t.sleep(poll_interval)


class ErasureFollower:
    """Follows erasures' changes with `updated_since`, oldest change first.

    Each `poll()` reads every change from a little before the newest one seen (by
    `overlap`) and returns those not returned before: a change that committed late, with
    an earlier stamp, is not missed, and none is returned twice by one follower. To go on
    after a restart, keep `restart_from` and pass it as `since`: a change near that point
    may come again then, so handle changes idempotently (by erasure id and status).
    """

    def __init__(
        self, erasures: Erasures, since: datetime, *, status: str | None,
        overlap: timedelta,
    ) -> None:  # fmt: skip
        if since.tzinfo is None:
            raise ValueError("give `since` with a time zone (e.g. datetime.now(UTC))")
        self._erasures = erasures
        self._since = since
        self._status = status
        self._overlap = overlap
        self.mark = since  # the newest updated_at returned so far (or the start)
        self._seen: dict[tuple[str, datetime], datetime] = {}

    @property
    def restart_from(self) -> datetime:
        return max(self._since, self.mark - self._overlap)

    def poll(self) -> list[Erasure]:
        changed: list[Erasure] = []
        for erasure in self._erasures.iterate(status=self._status, updated_since=self.restart_from):
            key = (erasure.id, erasure.updated_at)
            if key in self._seen:
                continue
            self._seen[key] = erasure.updated_at
            changed.append(erasure)
            self.mark = max(self.mark, erasure.updated_at)
        horizon = self.restart_from
        self._seen = {k: at for k, at in self._seen.items() if at >= horizon}
        return changed
