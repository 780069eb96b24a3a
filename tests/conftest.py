"""Shared fixtures: the example journey model and small event builders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from projections.journeys import JourneyModel
from streams.definitions import load_journeys
from streams.settings import example_journeys

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def model() -> JourneyModel:
    """The shipped example journeys (three personas, five channels)."""
    return load_journeys(example_journeys())


def event_line(event_id: str, customer: str, touchpoint: str, minutes: float, **extra: Any) -> bytes:
    """One JSON event line; the channel is the touchpoint's prefix."""
    body = {
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
        "channel": touchpoint.split(".", maxsplit=1)[0],
        "touchpoint": touchpoint,
        **extra,
    }
    return orjson.dumps(body)
