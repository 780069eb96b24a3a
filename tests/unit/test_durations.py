"""Durations in journey files and in messages people read."""

from __future__ import annotations

import pytest

from projections.durations import format_duration, parse_duration


def test_parse_accepts_the_documented_units() -> None:
    """90s, 30m, 2h, 3d, 1w and fractional values parse to milliseconds."""
    assert [parse_duration(t) for t in ("90s", "30m", "2h", "3d", "1w", "1.5h")] == [
        90_000, 1_800_000, 7_200_000, 259_200_000, 604_800_000, 5_400_000,
    ]  # fmt: skip


def test_parse_rejects_words_with_a_hint() -> None:
    """A misspelt duration says how to write one."""
    with pytest.raises(ValueError, match=r"write e\.g\. 90s"):
        parse_duration("3days")


def test_format_is_readable() -> None:
    """Whole units stay exact; other values show the two largest units."""
    assert [format_duration(ms) for ms in (600_000, 2_592_000_000, 466_370, 90_061_000, 500)] == [
        "10m", "30d", "7m46s", "1d1h", "500ms",
    ]  # fmt: skip
