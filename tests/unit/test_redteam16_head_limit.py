"""Red team 16: the head limit now counts a read only when the whole read was the head's
(22532dd): the read in which a head begins is not counted. Attacked with a head whose
first read is large (a transport hands up to 256 KiB at once) and which then goes on.

Held: what the head may hold is bounded by that one read plus the limit, as README says
(an unfinished header value is buffered by the parser meanwhile); the head is refused
431 once the reads after its first pass the limit, and a header value finished inside
the first read is refused by the header-bytes limit. Kept as regression tests.
"""

from __future__ import annotations

from tests.unit.test_redteam15_head_joins_body import _count_answers
from vault.http.edge_limits import _MAX_HEAD_BYTES

FIRST_READ = 200 * 1024  # under the 256 KiB a transport reads at once
START = b"GET /x HTTP/1.1\r\nHost: v\r\nX-Big: "


def test_a_head_begun_in_a_large_read_is_refused_once_the_reads_after_it_pass_the_limit() -> None:
    chunks = [START + b"a" * FIRST_READ, b"a" * (_MAX_HEAD_BYTES + 1), b"\r\n\r\n"]
    assert _count_answers(200, chunks, 1) == [431]


def test_a_large_value_finished_in_the_reads_allowed_is_refused_by_the_header_limit() -> None:
    chunks = [START + b"a" * FIRST_READ, b"a" * 1024 + b"\r\n\r\n"]
    assert _count_answers(200, chunks, 1) == [431]
    assert _count_answers(200, [START + b"a" * FIRST_READ + b"\r\n\r\n"], 1) == [431]
