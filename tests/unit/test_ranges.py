import pytest

from vault.domain.ranges import ByteRange, RangeNotSatisfiable, parse_range


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", ByteRange(0, 0)),
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=10-", ByteRange(10, 99)),
        ("bytes=-1", ByteRange(99, 99)),
        ("bytes=-500", ByteRange(0, 99)),
        ("bytes=90-5000", ByteRange(90, 99)),
        ("bytes=99-99", ByteRange(99, 99)),
    ],
)
def test_single_ranges_of_a_100_byte_object(header: str, expected: ByteRange) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=5000000-", "bytes=-0"])
def test_ranges_starting_past_the_end_are_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)


def test_any_range_of_an_empty_object_is_unsatisfiable() -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=0-", 0)
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=-5", 0)


@pytest.mark.parametrize(
    "header", [None, "bytes=0-1,5-6", "items=0-1", "bytes=5-2", "bytes=-", "bytes=a-b", ""]
)
def test_absent_multiple_or_malformed_ranges_mean_the_whole_object(header: str | None) -> None:
    assert parse_range(header, 100) is None


@pytest.mark.parametrize("digits", [20, 4301, 100_000])
def test_positions_longer_than_any_size_are_read_as_beyond_the_end(digits: int) -> None:
    # Never int() of the digits: Python refuses more than 4,300 (ValueError, a 500).
    huge = "9" * digits
    with pytest.raises(RangeNotSatisfiable):
        parse_range(f"bytes={huge}-", 100)
    assert parse_range(f"bytes=5-{huge}", 100) == ByteRange(5, 99)
    assert parse_range(f"bytes=-{huge}", 100) == ByteRange(0, 99)
    assert parse_range(f"bytes={huge}-5", 100) is None  # last before first: ignored


def test_leading_zeros_do_not_count_as_digits() -> None:
    zeros = "0" * 5000
    assert parse_range(f"bytes={zeros}3-{zeros}4", 100) == ByteRange(3, 4)
