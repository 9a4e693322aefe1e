"""Red team 8: what the access log says of an answer carrying decrypted data that the vault
cut after its row was committed.

docs/deletion-guarantee.md ("Downloads in flight"): once a transfer's key is destroyed
"the request is cancelled (a stalled `send` too), the connection reset, ... and the
access log records 404, 401 or 403 with the bytes sent", and vault/http/middleware.py: a
transfer the vault cut by the clock is logged "with the status of the reason ... with
the bytes sent so far". An answer sent as one message (every JSON answer carrying
decrypted data since answer-holds, a bounded range since migration 0035) is logged
before it is sent: its row commits with 200 and the whole body's length, and when the
watchdog then cuts the stalled send nothing corrects it. Shown with the pipelined
disclosure listings of tests/e2e/test_answers_hold_their_keys.py, whose client stops
reading: the vault cuts the waiting listing once the subject is erased (`transfer_cut`,
reason data_key_destroyed), the connection is reset, and the answers logged behind it
never leave the vault either; every row still says 200 with its full length.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tests.api.helpers import access_log, auth, create_key, put_record, rfc3339, subject_url
from tests.e2e.test_answers_hold_their_keys import (
    RECHECK,
    Listing,
    _listings,
    _pipelined_listings_outlive_erasure,
)
from tests.support import ServerThread, make_tenant, module_private_server
from vault.domain.disclosures import MAX_DESCRIPTION_LENGTH

cut_vault = module_private_server("redteam8-cut", transfer_recheck_seconds=RECHECK)


def test_a_cut_answer_with_decrypted_data_is_not_logged_as_delivered(
    cut_vault: ServerThread,
) -> None:
    """Steps: pipelined listings of disclosures about one subject, and the single reads
    of each listing's last item, on one connection whose client does not read; once the
    logged count is stable the subject is erased; the vault cuts the waiting answer
    (reason data_key_destroyed) and resets the connection; the erasure completes.

    Observed: every pipelined request's access-log row says 200 with its whole body's
    length, the cut one and those behind it on the reset connection included.
    Expected: the cut answer's row says it was cut (404 for a destroyed key, with the
    bytes actually sent), as for a streamed transfer; at least one row is not 200."""
    vault = cut_vault
    tenant = make_tenant(vault.settings, vault.database_url)
    erased_ref = f"disclosed-{uuid.uuid4().hex[:8]}"
    base = 30
    total = base + _listings(base, MAX_DESCRIPTION_LENGTH + 500) - 1
    now = datetime.now(UTC)
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        officer = create_key(http, tenant, ["compliance"])
        assert put_record(http, app, erased_ref, "profile", b'{"plan": "basic"}').status_code == 201
        for n in range(total):
            marker = f"erased-description-{n}-{uuid.uuid4().hex}-"
            recorded = http.post(
                "/v1/disclosures",
                json={
                    "subject_ref": erased_ref, "recipient": "Politie", "legal_basis": "Art. 6",
                    "reference": f"PV-{n}", "categories": ["account"],
                    "disclosed_at": rfc3339(now - timedelta(days=1, seconds=n)),
                    "description": marker + "d" * (MAX_DESCRIPTION_LENGTH - len(marker)),
                },
                headers=auth(officer),
            )  # fmt: skip
            assert recorded.status_code == 201, recorded.text
        listed = http.get("/v1/disclosures", params={"limit": total}, headers=auth(officer))
        items = listed.json()["items"]
        listing = Listing(
            "/v1/disclosures", officer, [item["description"].rstrip("d") for item in items],
            [item["id"] for item in items], lambda item: [("GET", f"/v1/disclosures/{item}")],
        )  # fmt: skip

        def erase() -> str:
            erasure = http.post(subject_url(erased_ref, "erasure"), headers=auth(privacy))
            assert erasure.status_code == 202, erasure.text
            return f"/v1/erasures/{erasure.json()['id']}"

        _, _, what = _pipelined_listings_outlive_erasure(
            vault, http, listing, base, erase, officer, privacy
        )
        rows = [
            row
            for row in access_log(http, officer, limit=500)
            if row["request_id"].startswith("answer-holds-")
        ]
    assert rows, "the pipelined requests were logged"
    statuses = {row["status"] for row in rows}
    assert statuses != {200}, (
        f"{len(rows)} rows, all 200 with their full length, though the vault cut the "
        f"waiting answer ({what}) and reset the connection"
    )
    # Each cut answer's request has its first row (200, written before it was sent), a
    # listing's one more for the subject it listed (200, 0 bytes: vault/http/
    # listed_subjects.py), and a last saying it was cut: 404 for the destroyed key, no
    # bytes claimed. Usually one answer waits: the one whose send the full socket
    # stopped. Answers before it that uvicorn had handed to the transport's buffer
    # (below its high-water mark) hold their keys until that buffer reaches the kernel,
    # and are cut alike: how many depends on the machine's timing, each must say so.
    by_request: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_request.setdefault(str(row["request_id"]), []).append(row)
    cut = [logged for logged in by_request.values() if {r["status"] for r in logged} != {200}]
    summary = {
        request: [(row["status"], row["bytes_out"]) for row in logged]
        for request, logged in by_request.items()
    }
    assert cut, summary
    for logged in cut:
        cut_statuses = sorted(int(str(row["status"])) for row in logged)
        assert cut_statuses in ([200, 404], [200, 200, 404]), summary
        assert [row["bytes_out"] for row in logged if row["status"] == 404] == [0], summary
        assert len([row for row in logged if row["status"] == 200 and row["bytes_out"]]) == 1
