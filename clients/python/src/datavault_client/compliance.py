"""Legal holds, disclosures and the access log (compliance scope)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from datavault_client import _routes as R
from datavault_client._fields import Fields
from datavault_client._transport import JsonBody, Transport, format_time, json_of
from datavault_client.models import (
    AccessLogEntry,
    CategoryImpact,
    Disclosure,
    Hold,
    HoldRelease,
    Page,
)


def _without_none(**fields: Any) -> dict[str, Any]:
    return {
        name: format_time(value) if isinstance(value, datetime) else value
        for name, value in fields.items()
        if value is not None
    }


class Holds:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def place(
        self, *, reason: str, reference: str, subject_ref: str | None = None,
        categories: Sequence[str] | None = None, note: str | None = None,
        expires_at: datetime | None = None, idempotency_key: str | None = None,
    ) -> Hold:  # fmt: skip
        """Hold one subject (also one not seen yet) or, without `subject_ref`, the whole
        tenant; all categories unless `categories`. Nothing it covers is destroyed."""
        body = _without_none(
            reason=reason, reference=reference, subject_ref=subject_ref,
            categories=list(categories) if categories is not None else None, note=note,
            expires_at=expires_at,
        )  # fmt: skip
        response = self._t.call(R.PLACE_HOLD, body=JsonBody(body), idempotency_key=idempotency_key)
        return Hold.parse(Fields(json_of(response, R.PLACE_HOLD), "hold"))

    def list(
        self, *, active: bool | None = None, subject_ref: str | None = None,
        reason: str | None = None, limit: int | None = None, cursor: str | None = None,
    ) -> Page[Hold]:  # fmt: skip
        params = {"active": active, "subject_ref": subject_ref, "reason": reason,
                  "limit": limit, "cursor": cursor}  # fmt: skip
        response = self._t.call(R.LIST_HOLDS, params=params)
        return Page.parse(json_of(response, R.LIST_HOLDS), "holds", Hold.parse)

    def iterate(
        self, *, active: bool | None = None, subject_ref: str | None = None,
        reason: str | None = None,
    ) -> Iterator[Hold]:  # fmt: skip
        cursor = None
        while True:
            page = self.list(active=active, subject_ref=subject_ref, reason=reason, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def get(self, hold_id: str) -> Hold:
        response = self._t.call(R.GET_HOLD, {"hold_id": hold_id})
        return Hold.parse(Fields(json_of(response, R.GET_HOLD), "hold"))

    def amend(
        self, hold_id: str, *, expires_at: datetime | None = None, note: str | None = None
    ) -> Hold:
        """Extend (an expiry only moves later) or annotate a hold."""
        body = _without_none(expires_at=expires_at, note=note)
        if not body:
            raise ValueError("give expires_at and/or note")
        response = self._t.call(R.AMEND_HOLD, {"hold_id": hold_id}, body=JsonBody(body))
        return Hold.parse(Fields(json_of(response, R.AMEND_HOLD), "hold"))

    def impact(self, hold_id: str) -> dict[str, CategoryImpact]:
        """What releasing the hold would shred now, by category."""
        response = self._t.call(R.HOLD_IMPACT, {"hold_id": hold_id})
        fields = Fields(json_of(response, R.HOLD_IMPACT), "impact")
        return {
            name: CategoryImpact(c.integer("keys"), c.integer("erasures"))
            for name, c in fields.mapping("categories").items()
        }

    def release(self, hold_id: str, *, reason: str) -> HoldRelease:
        """Release the hold. A litigation or law-enforcement hold takes two people: the
        first call requests it (`released` False), a second by a compliance key of another
        owner releases it; the same key again gets `Conflict`."""
        response = self._t.call(
            R.RELEASE_HOLD, {"hold_id": hold_id}, body=JsonBody({"reason": reason})
        )
        hold = Hold.parse(Fields(json_of(response, R.RELEASE_HOLD), "hold"))
        return HoldRelease(released=response.status_code == 200, hold=hold)

    def withdraw_release(self, hold_id: str) -> Hold:
        """Withdraw a release request still waiting for its second person."""
        response = self._t.call(R.WITHDRAW_HOLD_RELEASE, {"hold_id": hold_id})
        return Hold.parse(Fields(json_of(response, R.WITHDRAW_HOLD_RELEASE), "hold"))


class Disclosures:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def record(
        self, *, recipient: str, legal_basis: str, reference: str, categories: Sequence[str],
        disclosed_at: datetime, subject_ref: str | None = None, hold_id: str | None = None,
        description: str | None = None, withhold_from_subject_until: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Disclosure:  # fmt: skip
        """Record that data was handed to a third party (a court, the police)."""
        body = _without_none(
            recipient=recipient, legal_basis=legal_basis, reference=reference,
            categories=list(categories), disclosed_at=disclosed_at, subject_ref=subject_ref,
            hold_id=hold_id, description=description,
            withhold_from_subject_until=withhold_from_subject_until,
        )  # fmt: skip
        response = self._t.call(
            R.RECORD_DISCLOSURE, body=JsonBody(body), idempotency_key=idempotency_key
        )
        return Disclosure.parse(Fields(json_of(response, R.RECORD_DISCLOSURE), "disclosure"))

    def list(
        self, *, subject_ref: str | None = None, hold_id: str | None = None,
        since: datetime | None = None, until: datetime | None = None, limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Disclosure]:  # fmt: skip
        params = {"subject_ref": subject_ref, "hold_id": hold_id, "since": since,
                  "until": until, "limit": limit, "cursor": cursor}  # fmt: skip
        response = self._t.call(R.LIST_DISCLOSURES, params=params)
        return Page.parse(json_of(response, R.LIST_DISCLOSURES), "disclosures", Disclosure.parse)

    def get(self, disclosure_id: str) -> Disclosure:
        response = self._t.call(R.GET_DISCLOSURE, {"disclosure_id": disclosure_id})
        return Disclosure.parse(Fields(json_of(response, R.GET_DISCLOSURE), "disclosure"))


class AccessLog:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def search(
        self, *, api_key_id: str | None = None, ip: str | None = None,
        subject_ref: str | None = None, status: int | None = None,
        since: datetime | None = None, until: datetime | None = None,
        limit: int | None = None, cursor: str | None = None,
    ) -> Page[AccessLogEntry]:  # fmt: skip
        """Requests the vault served, newest first; `ip` is one address or a CIDR,
        `since` inclusive and `until` exclusive."""
        params = {"api_key_id": api_key_id, "ip": ip, "subject_ref": subject_ref,
                  "status": status, "since": since, "until": until, "limit": limit,
                  "cursor": cursor}  # fmt: skip
        response = self._t.call(R.SEARCH_ACCESS_LOG, params=params)
        return Page.parse(json_of(response, R.SEARCH_ACCESS_LOG), "access log",
                          AccessLogEntry.parse)  # fmt: skip
