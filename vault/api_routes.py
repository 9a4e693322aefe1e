"""The JSON API's route table: one route per path. Its own module so that a process that
serves no API (`datavault worker`: OPS_ROUTES only) does not import the handlers."""

from __future__ import annotations

from vault.app import OPS_ROUTES
from vault.http import (
    access_log,
    api_keys,
    artefacts,
    disclosures,
    erasures,
    holds,
    ops,
    playback,
    receipts,
    records,
    subjects,
    tenant,
    webhooks,
)
from vault.http.idempotency import idempotent
from vault.http.routing import route

# The JSON API, one route per path: each handler declares its operation
# (vault/http/operation.py), and /openapi.json is built from this table and those.
ROUTES = [
    *OPS_ROUTES,
    route("/openapi.json", GET=ops.openapi_json),
    route("/docs", GET=ops.docs),
    route("/v1/tenant", GET=tenant.show_tenant),
    route("/v1/tenant/settings", PATCH=tenant.patch_settings),
    route(
        "/v1/tenant/closure",
        POST=idempotent(tenant.request_closure_endpoint),
        DELETE=tenant.cancel_closure_endpoint,
    ),
    route("/v1/api-keys", GET=api_keys.list_api_keys, POST=idempotent(api_keys.create_api_key)),
    route("/v1/api-keys/{key_id}", DELETE=api_keys.revoke_api_key),
    route("/v1/access-log", GET=access_log.search_access_log),
    route(
        "/v1/subjects/{ref}/artefacts",
        GET=artefacts.list_artefacts,
        POST=idempotent(artefacts.upload_artefact, streamed_body=True),
    ),
    route(
        "/v1/subjects/{ref}/artefacts/{artefact_id}",
        GET=artefacts.show_artefact,
        DELETE=artefacts.delete_artefact,
    ),
    route(
        "/v1/subjects/{ref}/artefacts/{artefact_id}/content",
        GET=artefacts.artefact_content,
        HEAD=artefacts.artefact_content_headers,
    ),
    route(
        "/v1/subjects/{ref}/artefacts/{artefact_id}/links",
        POST=idempotent(playback.mint_playback_link),
    ),
    # A playback link's URL: the token in the path is the credential (vault/http/playback.py).
    route(f"{playback.PLAYBACK_PATH}/{{token}}", GET=playback.play, HEAD=playback.play_headers),
    route("/v1/subjects/{ref}/records", GET=records.list_records),
    route(
        "/v1/subjects/{ref}/records/{name}",
        GET=records.get_record,
        PUT=idempotent(records.put_record),
        DELETE=records.delete_record,
    ),
    route("/v1/subjects/{ref}/records/{name}/versions", GET=records.list_record_versions),
    route("/v1/subjects/{ref}/records/{name}/versions/{version}", GET=records.get_record_version),
    route("/v1/subjects/{ref}/export", GET=subjects.export_subject),
    route(
        "/v1/subjects/{ref}/restriction",
        POST=subjects.restrict_subject,
        DELETE=subjects.lift_restriction,
    ),
    route("/v1/subjects/{ref}", GET=subjects.show_subject),
    route("/v1/subjects/{ref}/erasure", POST=idempotent(erasures.request_erasure)),
    route("/v1/erasures", GET=erasures.list_erasures),
    route("/v1/erasures/{erasure_id}", GET=erasures.show_erasure),
    route("/v1/erasures/{erasure_id}/cancel", POST=erasures.cancel_erasure),
    route("/v1/erasures/{erasure_id}/release-brake", POST=erasures.release_erasure_brake),
    route("/v1/erasures/{erasure_id}/receipt", GET=erasures.erasure_receipt),
    route("/v1/holds", GET=holds.list_holds, POST=idempotent(holds.place_hold)),
    route("/v1/holds/{hold_id}", GET=holds.show_hold, PATCH=holds.amend_hold),
    route(
        "/v1/holds/{hold_id}/release",
        POST=holds.release_hold,
        DELETE=holds.withdraw_hold_release,
    ),
    route("/v1/holds/{hold_id}/impact", GET=holds.hold_impact),
    route(
        "/v1/disclosures",
        GET=disclosures.list_disclosures,
        POST=idempotent(disclosures.record_disclosure),
    ),
    route("/v1/disclosures/{disclosure_id}", GET=disclosures.show_disclosure),
    route("/v1/receipt-keys", GET=receipts.receipt_keys),
    # The same key set where JOSE tooling looks for it (RFC 8615), under the receipts'
    # `issuer`.
    route("/.well-known/jwks.json", GET=receipts.jwks),
    route("/v1/webhooks", GET=webhooks.list_webhooks, POST=idempotent(webhooks.create_webhook)),
    route("/v1/webhooks/{webhook_id}", GET=webhooks.show_webhook, DELETE=webhooks.delete_webhook),
    route("/v1/webhooks/{webhook_id}/test", POST=webhooks.test_webhook),
    route("/v1/webhooks/{webhook_id}/deliveries", GET=webhooks.list_deliveries),
    route(
        "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry",
        POST=webhooks.retry_delivery,
    ),
]
