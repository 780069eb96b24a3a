"""`touchpath erase`: remove customers from every table and the data dir (placeholder until it lands)."""

from __future__ import annotations

from typing import Any


def register(groups: Any) -> None:
    """Add nothing yet."""
