"""Durations as written in journey files ("90s", "30m", "2h", "3d", "1w") converted to milliseconds."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

_UNITS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")


def parse_duration(text: str | int) -> int:
    """Milliseconds in a duration string; a bare integer is already milliseconds."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            msg = "a duration cannot be negative"
            raise ValueError(msg)
        return text
    match = _PATTERN.match(str(text))
    if match is None:
        msg = f"'{text}' is not a duration; write e.g. 90s, 30m, 2h, 3d or 1w"
        raise ValueError(msg)
    return round(float(match.group(1)) * _UNITS[match.group(2)])


def format_duration(ms: int) -> str:
    """The shortest exact duration string for a number of milliseconds."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


DurationMs = Annotated[int, BeforeValidator(parse_duration)]
