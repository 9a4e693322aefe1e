"""`GET /v1/access-log?subject_ref=X` (the runbook's "every request about X") is found by
index (migration 0044), not by reading the tenant's whole log: on a log where X is a few
rows among many, the vault's own search statement plans an index scan of
`access_log_subject` and reads only X's rows."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg

from tests.support import new_database
from vault.db.sql import Queries

Q = Queries("access_log")
LOG_ROWS = 20_000
SUBJECT_ROWS = 4


async def _plan_of_subject_search(url: str) -> tuple[dict[str, object], int]:
    conn = await asyncpg.connect(url)
    try:
        tenant = uuid.uuid4()
        # Rows about X every 5,000th; two thirds of the others about one of 2,000 other
        # subjects, the rest about no subject (listings, settings).
        await conn.execute(
            """INSERT INTO access_log (tenant_id, seq, at, request_id, ip_hash, method, route,
                                       status, subject_ref_hash, prev_hash, row_hash)
               SELECT $1, g, now(), 'r' || g, '\\x00', 'GET', '/v1/x', 200,
                      CASE WHEN g % 5000 = 1 THEN '\\xaa'::bytea
                           WHEN g % 3 = 0 THEN NULL
                           ELSE int4send(g % 2000) END,
                      '\\x00', '\\x00'
                 FROM generate_series(1, $2) g""",
            tenant,
            LOG_ROWS,
        )
        await conn.execute("ANALYZE access_log")
        args = (tenant, None, None, None, None, None, None, b"\xaa", 100, None)
        found = len(await conn.fetch(Q.search, *args))
        explained = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {Q.search}", *args)
        plan = json.loads(explained)[0]["Plan"]
        return plan, found
    finally:
        await conn.close()


def _nodes(plan: dict[str, object]) -> list[dict[str, object]]:
    children = plan.get("Plans", [])
    assert isinstance(children, list)
    return [plan, *(node for child in children for node in _nodes(child))]


def test_a_subjects_requests_are_read_by_index_not_by_the_whole_log(pg_admin_url: str) -> None:
    plan, found = asyncio.run(_plan_of_subject_search(new_database(pg_admin_url)))

    assert found == SUBJECT_ROWS
    scans = [node for node in _nodes(plan) if "Scan" in str(node["Node Type"])]
    assert [node.get("Index Name") for node in scans] == ["access_log_subject"]
    # Only X's rows were read from the table, not the log back to its first row.
    assert sum(float(str(node["Actual Rows"])) for node in scans) == SUBJECT_ROWS
