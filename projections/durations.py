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
    """A duration for people: exact when it is a whole unit ("30d", "10m"), else the two largest
    units ("7m46s", "2d3h")."""
    if ms < 1000:
        return f"{ms}ms"
    largest = next(unit for unit in ("w", "d", "h", "m", "s") if ms >= _UNITS[unit])
    if ms % _UNITS[largest] == 0:
        return f"{ms // _UNITS[largest]}{largest}"
    parts: list[str] = []
    rest = ms
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if rest >= size or parts:
            if rest // size:
                parts.append(f"{rest // size}{unit}")
            rest %= size
            if len(parts) == 2 or not rest:
                break
    return "".join(parts) or f"{ms}ms"


DurationMs = Annotated[int, BeforeValidator(parse_duration)]
