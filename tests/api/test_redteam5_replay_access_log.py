"""Red team 5: an Idempotency-Key replay is an access to the subject like the first answer.

A replayed upload answers the artefact's id, `subject_ref`, filename and `sha256` of its
plaintext (the stored first answer). DESIGN.md, "Access log": every request is logged
with the pseudonymous subject id and the artefact id, and the compliance team finds a
subject's accesses by `subject_ref` (runbook, "Show that subject X was erased"). The
replay is answered by vault/http/idempotency.py before the operation wrapper notes the
subject, so its row carries neither: searching the log by subject misses it.
"""

from __future__ import annotations

import uuid

from tests.api.helpers import auth, create_key, subject_url
from tests.support import ServerThread, Tenant


def test_a_replayed_upload_is_found_by_the_subject_in_the_access_log(
    server: ServerThread, tenant: Tenant
) -> None:
    ref = f"replayed-{uuid.uuid4().hex[:10]}"
    idempotency_key = uuid.uuid4().hex
    with server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        compliance = create_key(http, tenant, ["compliance"])
        answers = [
            http.post(
                f"{subject_url(ref, 'artefacts')}?category=recording",
                content=b"a recorded call",
                headers={
                    **auth(app),
                    "Idempotency-Key": idempotency_key,
                    "X-Filename": "call.wav",
                },
            )
            for _ in range(2)
        ]
        assert [a.status_code for a in answers] == [201, 201]
        assert answers[1].headers.get("Idempotent-Replayed") == "true"
        # The replay hands out what the first answer did: the subject and the artefact.
        assert answers[1].json() == answers[0].json()
        artefact_id = answers[0].json()["id"]
        rows = http.get(
            "/v1/access-log", params={"subject_ref": ref}, headers=auth(compliance)
        ).json()["items"]
    request_ids = [a.headers["X-Request-Id"] for a in answers]
    assert sorted(row["request_id"] for row in rows) == sorted(request_ids)
    assert {row["artefact_id"] for row in rows} == {artefact_id}
