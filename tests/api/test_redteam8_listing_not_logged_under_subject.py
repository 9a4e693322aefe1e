"""Red team 8: the access log of an answer carrying a subject's decrypted data.

Since answer-holds, a listing of disclosures across subjects is a transfer of each listed
subject's data: it opens their references and descriptions with each subject's identity
key, and an erasure of any of them waits for it (docs/deletion-guarantee.md). The
runbook ("Show that subject X was erased", steps 1 and 4) finds who read X's data with
`GET /v1/access-log?subject_ref=X`: "every request about X". An unfiltered listing's row
names no subject, so a request that returned X's reference and description is not among
them (getDisclosure of the same entry is: it logs the disclosure's subject).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from tests.api.helpers import access_log, auth, create_key, put_record, rfc3339, wait_for
from tests.support import ServerThread, make_tenant


def test_a_disclosure_listing_that_returned_a_subjects_data_is_found_under_that_subject(
    quiet_vault: ServerThread,
) -> None:
    tenant = make_tenant(quiet_vault.settings, quiet_vault.database_url)
    ref = f"listed-{uuid.uuid4().hex[:8]}"
    marker = f"handed-over-{uuid.uuid4().hex}"
    with quiet_vault.client() as http:
        app = create_key(http, tenant, ["ingest"])
        officer = create_key(http, tenant, ["compliance"])
        assert put_record(http, app, ref, "profile", b'{"plan": "basic"}').status_code == 201
        recorded = http.post(
            "/v1/disclosures",
            json={
                "subject_ref": ref, "recipient": "Politie Eenheid Amsterdam",
                "legal_basis": "Art. 126nd Sv (vordering)", "reference": "PV-1",
                "categories": ["account"], "disclosed_at": rfc3339(datetime.now(UTC)),
                "description": marker,
            },
            headers=auth(officer),
        )  # fmt: skip
        assert recorded.status_code == 201, recorded.text
        single_id, listing_id = f"single-{uuid.uuid4().hex}", f"listing-{uuid.uuid4().hex}"
        single = http.get(
            f"/v1/disclosures/{recorded.json()['id']}",
            headers={**auth(officer), "X-Request-Id": single_id},
        )
        listing = http.get("/v1/disclosures", headers={**auth(officer), "X-Request-Id": listing_id})
        assert marker in single.text and ref in single.text
        assert marker in listing.text and ref in listing.text  # X's data went out in both

        def about_subject() -> set[str]:
            return {row["request_id"] for row in access_log(http, officer, subject_ref=ref)}

        assert wait_for(lambda: single_id in about_subject())
        assert listing_id in about_subject(), (
            "the listing that returned the subject's reference and description is not "
            "among the subject's access-log rows"
        )
