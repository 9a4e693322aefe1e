"""Red team 16: the access-log writer's answer to a read's lost hold refused (DV410,
880685b `AccessLogWriter._hold_refused`), attacked with batches that mix requests.

The database is a stand-in that chains rows as the append statements commit them and
refuses, like dv_access_log_chain_holding (migration 0035), every statement that confirms
a hold on a destroyed key: the whole statement, nothing of it committed. What must hold:
no request whose hold was refused is told its row committed (its answer would go out),
every other request of the batch is, each request is in the chain once and in the order
the requests came, a refused read is logged as the 503 it is answered without its hold
or further subjects' rows, and the log is not marked failing by a read's refusal.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from crypto.secrets import SecretBytes
from vault.db.database import HOLD_REFUSED_SQLSTATE
from vault.errors import Unavailable
from vault.services.access_log import AccessEntry, AccessLogWriter

TENANT = uuid.uuid4()
DESTROYED = uuid.uuid4()  # a data key whose hold was lost and which is destroyed since
LIVE = uuid.uuid4()


class _HoldRefused(asyncpg.PostgresError):
    sqlstate = HOLD_REFUSED_SQLSTATE


class _ChainingDatabase:
    """Commits each append statement whole, in the order the statements arrive."""

    def __init__(self) -> None:
        self.chain: list[tuple[str, int, int, bytes | None]] = []
        self.statements = 0

    async def tenant_fetchrow(self, tenant_id: uuid.UUID, query: Any, *args: Any) -> None:
        self.statements += 1
        await asyncio.sleep(0.002)  # a round trip: later batches are sent meanwhile
        columns = args[:13]
        holding = len(args) > 16
        if holding and DESTROYED in args[17]:
            raise _HoldRefused("a read's hold on its data key was lost and the key destroyed")
        request_ids, statuses, bytes_out, subjects = (
            columns[1],
            columns[8],
            columns[10],
            columns[11],
        )
        self.chain.extend(zip(request_ids, statuses, bytes_out, subjects, strict=True))


def _entry(request_id: str, status: int = 200, **kwargs: Any) -> AccessEntry:
    return AccessEntry(
        tenant_id=TENANT, at=datetime.now(UTC), request_id=request_id, method="GET",
        route="/v1/subjects/{ref}/records", status=status, bytes_out=100, **kwargs,
    )  # fmt: skip


def _read(request_id: str, key: uuid.UUID, also_under: tuple[bytes, ...] = ()) -> AccessEntry:
    return _entry(
        request_id, held_by_transfer=uuid.uuid4(), held_keys=(key,), also_under=also_under,
        subject_ref_hash=b"own",
    )  # fmt: skip


async def _outcomes(entries: list[AccessEntry]) -> tuple[_ChainingDatabase, dict[str, str], bool]:
    db = _ChainingDatabase()
    writer = AccessLogWriter(db, SecretBytes(b"k" * 32))  # type: ignore[arg-type]
    writer.start()
    futures = [(entry.request_id, writer.submit(entry)) for entry in entries]
    outcomes: dict[str, str] = {}
    for request_id, future in futures:
        try:
            await future
            outcomes[request_id] = "committed"
        except Unavailable:
            outcomes[request_id] = "refused"
    failing = writer.failing
    await writer.stop()
    return db, outcomes, failing


def test_a_batch_with_two_refused_reads_a_listing_and_bystanders() -> None:
    entries = [
        _entry("write-1", status=201),
        _read("read-refused", DESTROYED),
        _read("read-live", LIVE),
        _read("listing-refused", DESTROYED, also_under=(b"other-a", b"other-b")),
        _entry("write-2", status=204),
    ]
    db, outcomes, failing = asyncio.run(_outcomes(entries))
    assert outcomes == {
        "write-1": "committed",
        "read-refused": "refused",
        "read-live": "committed",
        "listing-refused": "refused",
        "write-2": "committed",
    }
    # Each request once, in the order they came; the refused as the 503 they are
    # answered, 0 bytes, without their further subjects' rows.
    assert [(rid, status, out) for rid, status, out, _ in db.chain] == [
        ("write-1", 201, 100),
        ("read-refused", 503, 0),
        ("read-live", 200, 100),
        ("listing-refused", 503, 0),
        ("write-2", 204, 100),
    ]
    assert not failing


def test_a_refused_read_behind_batches_in_flight_is_refused_and_logged_once() -> None:
    """More requests than one batch holds, the refused read among them: whatever the
    batches in flight commit meanwhile, every request is in the chain once."""
    entries = [_entry(f"write-{n}", status=201) for n in range(600)]
    entries.insert(300, _read("read-refused", DESTROYED))
    entries.insert(550, _read("read-live", LIVE))
    db, outcomes, failing = asyncio.run(_outcomes(entries))
    assert outcomes.pop("read-refused") == "refused"
    assert set(outcomes.values()) == {"committed"}
    request_ids = [rid for rid, *_ in db.chain]
    assert len(request_ids) == len(set(request_ids)) == len(entries)
    assert ("read-refused", 503, 0, b"own") in db.chain
    assert not failing


@pytest.mark.parametrize("refused_first", [True, False])
def test_a_read_refused_alone_is_one_row_of_503(refused_first: bool) -> None:
    entries = [_read("read-refused", DESTROYED)]
    if not refused_first:
        entries.insert(0, _read("read-live", LIVE))
    db, outcomes, _ = asyncio.run(_outcomes(entries))
    assert outcomes["read-refused"] == "refused"
    assert [row for row in db.chain if row[0] == "read-refused"] == [
        ("read-refused", 503, 0, b"own")
    ]
