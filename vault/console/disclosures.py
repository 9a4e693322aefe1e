"""Disclosures in the console: the form beside the hold that asked for them (on the hold's
page; the handler is in holds.py, which renders that page), and the lists on the hold's
and the subject's pages."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request

from vault.console.dates import field_value, parse_field
from vault.console.i18n import CATALOGUE
from vault.console.web import DISCLOSURES_SHOWN, form_ref
from vault.domain.disclosures import shown_to_subject
from vault.errors import InvalidInput
from vault.http.listed_subjects import note_listed_disclosures
from vault.http.state import VaultState, vault_state
from vault.http.transfers import watch_transfer
from vault.services.api_keys import Principal
from vault.services.disclosures import Disclosure

# The form's fields by the service's names: the form shares its page with the hold's own
# forms, so names that could clash (reference, categories, subject_ref) are prefixed.
FORM_FIELDS = {
    "subject_ref": "disclosure_subject_ref",
    "recipient": "recipient",
    "legal_basis": "legal_basis",
    "reference": "disclosure_reference",
    "categories": "disclosure_categories",
    "description": "description",
    "disclosed_at": "disclosed_at",
    "withhold_from_subject_until": "withhold_until",
}


def disclosure_view(disclosure: Disclosure, now: datetime) -> dict[str, Any]:
    ref = disclosure.subject_ref
    return {
        "id": disclosure.id,
        "subject_ref": ref.reveal() if ref is not None else None,
        "ref_hash": disclosure.subject_ref_hash.hex() if disclosure.subject_ref_hash else None,
        "hold_id": disclosure.hold_id,
        "recipient": disclosure.recipient,
        "legal_basis": disclosure.legal_basis,
        "reference": disclosure.reference,
        "categories": disclosure.categories,
        "description": disclosure.description,
        "description_erased": disclosure.description_erased,
        "disclosed_at": disclosure.disclosed_at,
        "withhold_until": disclosure.withhold_from_subject_until,
        "shown_to_subject": shown_to_subject(disclosure.withhold_from_subject_until, now),
    }


# A page that shows disclosures is a transfer (vault/http/transfers.py), as the API's
# answers are: the subjects' identity keys their descriptions and references are opened
# with are held, and watched, until the page has left.


async def under_hold(
    request: Request, principal: Principal, hold_id: uuid.UUID
) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    found = await vault_state(request).disclosures.search(
        principal.tenant_id, hold_id=hold_id, limit=DISCLOSURES_SHOWN,
        lease=watch_transfer(request, principal),
    )  # fmt: skip
    # A hold's page names no subject in its row; a tenant-wide hold's lists many.
    note_listed_disclosures(request, found)
    return [disclosure_view(d, now) for d in found]


async def about_subject(
    request: Request, principal: Principal, ref_hash: bytes
) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    found = await vault_state(request).disclosures.search(
        principal.tenant_id, subject_ref_hash=ref_hash, limit=DISCLOSURES_SHOWN,
        lease=watch_transfer(request, principal),
    )  # fmt: skip
    note_listed_disclosures(request, found)  # the page's own subject: no further row
    return [disclosure_view(d, now) for d in found]


def form_defaults(hold: dict[str, Any], language: str) -> dict[str, Any]:
    """The form as a hold's page first shows it: the hold's case reference and
    categories, disclosed now."""
    return {
        "disclosure_reference": hold["reference"],
        "disclosure_categories": list(hold["categories"] or []),
        "disclosed_at": field_value(datetime.now(UTC), language),
    }


@dataclass(frozen=True)
class DisclosureForm:
    typed: dict[str, Any]  # what was typed, by form field, to show again
    values: dict[str, object]  # the service's values (API.md's fields)
    subject_ref_hash: bytes | None
    parse_errors: dict[str, str]  # by the service's field names


async def read_disclosure_form(
    form: FormData, state: VaultState, tenant_id: uuid.UUID, language: str
) -> DisclosureForm:
    def text(name: str) -> str:
        value = form.get(name)
        return value.strip() if isinstance(value, str) else ""

    typed: dict[str, Any] = {name: text(name) for name in FORM_FIELDS.values()}
    raw_ref = form.get(FORM_FIELDS["subject_ref"])
    typed[FORM_FIELDS["subject_ref"]] = raw_ref if isinstance(raw_ref, str) else ""
    categories = [c for c in form.getlist(FORM_FIELDS["categories"]) if isinstance(c, str)]
    typed[FORM_FIELDS["categories"]] = categories
    values: dict[str, object] = {
        "recipient": typed["recipient"],
        "legal_basis": typed["legal_basis"],
        "reference": typed[FORM_FIELDS["reference"]],
        "categories": categories,
        "description": typed["description"] or None,
    }
    errors: dict[str, str] = {}
    for name in ("disclosed_at", "withhold_from_subject_until"):
        try:
            values[name] = parse_field(name, typed[FORM_FIELDS[name]], language)
        except InvalidInput as exc:
            values[name], errors[name] = None, exc.detail
    ref_hash = None
    try:
        ref = form_ref(form, FORM_FIELDS["subject_ref"])
        ref_hash = await state.subject_refs.hash(tenant_id, ref) if ref else None
    except InvalidInput as exc:
        errors["subject_ref"] = exc.detail
    return DisclosureForm(typed, values, ref_hash, errors)


def form_errors(exc: InvalidInput) -> dict[str, str]:
    """The service's field errors by form field, each in the visitor's language where the
    catalogue words it (`invalid.<form field>`), else the service's own message."""
    found: dict[str, str] = {}
    for error in exc.extra.get("errors", []):
        field = FORM_FIELDS.get(error["field"], error["field"])
        key = f"invalid.{field}"
        found[field] = key if key in CATALOGUE else error["message"]
    return found
