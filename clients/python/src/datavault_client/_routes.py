"""Every operation of the vault's HTTP API this client speaks, in one table.

An operation knows its method, its route template and its kind: a read, a create (every
call carries an Idempotency-Key), a delete of one thing, or a change. Reads, creates and
deletes are safe to try again (retry.py); a change (cancel, release, restrict, amend) is
not: a second try of one whose answer was lost would answer 409 for what succeeded.
Errors name an operation by this template, never by the path it was called with.
"""

from __future__ import annotations

import string
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    READ = "read"
    CREATE = "create"
    DELETE = "delete"
    CHANGE = "change"


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    kind: Kind
    authenticated: bool = True

    @property
    def creates(self) -> bool:
        return self.kind is Kind.CREATE

    @property
    def deletes(self) -> bool:
        return self.kind is Kind.DELETE

    @property
    def retry_safe(self) -> bool:
        """Doing it twice does nothing twice."""
        return self.kind is not Kind.CHANGE

    def path(self, values: Mapping[str, str]) -> str:
        names = {name for _, name, _, _ in string.Formatter().parse(self.template) if name}
        if names != set(values):
            raise TypeError(f"{self}: needs {sorted(names)}")
        return self.template.format(
            **{name: urllib.parse.quote(str(value), safe="") for name, value in values.items()}
        )

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


def _read(template: str, method: str = "GET") -> Operation:
    return Operation(method, template, Kind.READ)


def _create(template: str, method: str = "POST") -> Operation:
    return Operation(method, template, Kind.CREATE)


def _delete(template: str) -> Operation:
    return Operation("DELETE", template, Kind.DELETE)


def _change(method: str, template: str) -> Operation:
    return Operation(method, template, Kind.CHANGE)


SUBJECT = "/v1/subjects/{ref}"
ARTEFACT = SUBJECT + "/artefacts/{artefact_id}"
RECORD = SUBJECT + "/records/{name}"

# Subjects
GET_SUBJECT = _read(SUBJECT)
EXPORT_SUBJECT = _read(SUBJECT + "/export")
RESTRICT_SUBJECT = _change("POST", SUBJECT + "/restriction")
LIFT_RESTRICTION = _change("DELETE", SUBJECT + "/restriction")

# Artefacts
UPLOAD_ARTEFACT = _create(SUBJECT + "/artefacts")
LIST_ARTEFACTS = _read(SUBJECT + "/artefacts")
GET_ARTEFACT = _read(ARTEFACT)
DELETE_ARTEFACT = _delete(ARTEFACT)
ARTEFACT_CONTENT = _read(ARTEFACT + "/content")
ARTEFACT_CONTENT_HEAD = _read(ARTEFACT + "/content", "HEAD")
MINT_PLAYBACK_LINK = _create(ARTEFACT + "/links")

# Records
PUT_RECORD = _create(RECORD, "PUT")
GET_RECORD = _read(RECORD)
LIST_RECORDS = _read(SUBJECT + "/records")
DELETE_RECORD = _delete(RECORD)
LIST_RECORD_VERSIONS = _read(RECORD + "/versions")
GET_RECORD_VERSION = _read(RECORD + "/versions/{version}")

# Erasure
REQUEST_ERASURE = _create(SUBJECT + "/erasure")
LIST_ERASURES = _read("/v1/erasures")
GET_ERASURE = _read("/v1/erasures/{erasure_id}")
CANCEL_ERASURE = _change("POST", "/v1/erasures/{erasure_id}/cancel")
RELEASE_ERASURE_BRAKE = _change("POST", "/v1/erasures/{erasure_id}/release-brake")
GET_RECEIPT = _read("/v1/erasures/{erasure_id}/receipt")
# The key set is public: no Authorization header goes with it.
JWKS = Operation("GET", "/.well-known/jwks.json", Kind.READ, authenticated=False)
RECEIPT_KEYS = Operation("GET", "/v1/receipt-keys", Kind.READ, authenticated=False)

# Legal holds
PLACE_HOLD = _create("/v1/holds")
LIST_HOLDS = _read("/v1/holds")
GET_HOLD = _read("/v1/holds/{hold_id}")
AMEND_HOLD = _change("PATCH", "/v1/holds/{hold_id}")
HOLD_IMPACT = _read("/v1/holds/{hold_id}/impact")
RELEASE_HOLD = _change("POST", "/v1/holds/{hold_id}/release")
WITHDRAW_HOLD_RELEASE = _change("DELETE", "/v1/holds/{hold_id}/release")

# Disclosures
RECORD_DISCLOSURE = _create("/v1/disclosures")
LIST_DISCLOSURES = _read("/v1/disclosures")
GET_DISCLOSURE = _read("/v1/disclosures/{disclosure_id}")

# Access log
SEARCH_ACCESS_LOG = _read("/v1/access-log")

# API keys
CREATE_API_KEY = _create("/v1/api-keys")
LIST_API_KEYS = _read("/v1/api-keys")
REVOKE_API_KEY = _delete("/v1/api-keys/{key_id}")

# Webhook endpoints. A test event and a retried delivery each queue one more delivery:
# changes, sent once.
CREATE_WEBHOOK = _create("/v1/webhooks")
LIST_WEBHOOKS = _read("/v1/webhooks")
GET_WEBHOOK = _read("/v1/webhooks/{webhook_id}")
DELETE_WEBHOOK = _delete("/v1/webhooks/{webhook_id}")
TEST_WEBHOOK = _change("POST", "/v1/webhooks/{webhook_id}/test")
LIST_WEBHOOK_DELIVERIES = _read("/v1/webhooks/{webhook_id}/deliveries")
RETRY_WEBHOOK_DELIVERY = _change("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry")

# Tenant
GET_TENANT = _read("/v1/tenant")
UPDATE_SETTINGS = _change("PATCH", "/v1/tenant/settings")
REQUEST_CLOSURE = _create("/v1/tenant/closure")
CANCEL_CLOSURE = _change("DELETE", "/v1/tenant/closure")


def all_operations() -> list[Operation]:
    """Every operation above (the coverage test compares them with /openapi.json)."""
    return [value for value in globals().values() if isinstance(value, Operation)]
