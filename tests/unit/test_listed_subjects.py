"""Which subjects a listing is logged under, and how a request's rows are batched
(vault/http/listed_subjects.py, vault/services/access_log.py)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime

from vault.domain.subject_refs import normalize_ref
from vault.services.access_log import MAX_BATCH_ROWS, AccessEntry, _batch_size, _Pending
from vault.services.disclosures import Disclosure

NOW = datetime.now(UTC)
HASH = bytes(range(32))


def _disclosure(**fields: object) -> Disclosure:
    base = Disclosure(
        id=uuid.uuid4(), seq=1, recorded_at=NOW, recorded_by=uuid.uuid4(),
        subject_ref_hash=HASH, subject_ref=normalize_ref("ann"), hold_id=None,
        recipient="FIOD", legal_basis="Art. 47 AWR", reference="F-1", categories=("account",),
        description="ledger", description_erased=False, disclosed_at=NOW,
        withhold_from_subject_until=None,
    )  # fmt: skip
    return replace(base, **fields)  # type: ignore[arg-type]


def test_an_entry_is_logged_under_its_subject_only_while_it_carries_the_subjects_data() -> None:
    assert _disclosure().opened_subject == HASH
    assert _disclosure(description=None).opened_subject == HASH  # the reference alone
    assert _disclosure(subject_ref=None).opened_subject == HASH  # the description alone
    # Erased: only the hash is shown, nothing of the subject's was opened.
    erased = _disclosure(subject_ref=None, description=None, description_erased=True)
    assert erased.opened_subject is None
    assert (
        _disclosure(subject_ref_hash=None, subject_ref=None, description=None).opened_subject
        is None
    )


def _entry(subjects: int) -> AccessEntry:
    return AccessEntry(
        uuid.uuid4(), NOW, "req", "GET", "/v1/disclosures", 200, bytes_out=1234,
        artefact_id=uuid.uuid4(), held_by_transfer=uuid.uuid4(), held_keys=(uuid.uuid4(),),
        also_under=tuple(n.to_bytes(32, "big") for n in range(subjects)),
    )  # fmt: skip


def test_a_subjects_row_repeats_the_request_with_no_bytes_artefact_or_holds() -> None:
    request = _entry(2)
    rows = request.subject_rows()
    assert [row.subject_ref_hash for row in rows] == list(request.also_under)
    for row in rows:
        assert (row.bytes_in, row.bytes_out, row.artefact_id) == (0, 0, None)
        assert (row.held_by_transfer, row.held_keys, row.also_under) == (None, (), ())
        assert (row.request_id, row.route, row.status, row.at) == (
            request.request_id, request.route, request.status, request.at,
        )  # fmt: skip
    assert request.rows == 3


def test_a_requests_rows_are_never_split_across_batches() -> None:
    async def sizes() -> list[int]:
        def queue(*subjects: int) -> list[_Pending]:  # a _Pending needs a running loop
            return [_Pending(_entry(n)) for n in subjects]

        return [
            _batch_size(queue(*[0] * 600)),  # plain rows: 500 a batch, as before
            _batch_size(queue(500, 0)),  # 501 rows: a batch of its own
            _batch_size(queue(0, 500)),  # it waits for the next batch
            _batch_size(queue(249, 248, 0)),  # 250 + 249 = 499: one more fits
            _batch_size(queue(249, 249, 0)),  # exactly 500
        ]

    assert MAX_BATCH_ROWS == 500
    assert asyncio.run(sizes()) == [500, 1, 1, 3, 2]
