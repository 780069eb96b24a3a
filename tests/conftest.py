"""Shared fixtures: the example journey model and small event builders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from projections.journeys import JourneyModel
from streams.common.definitions import load_journeys
from streams.common.settings import example_journeys

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


def online_journey(customer: str = "c1", start: int = 0) -> list[bytes]:
    """The online buyer's ideal path for one customer, starting `start` minutes after T0."""
    return [
        event_line(f"{customer}-1", customer, "email.campaign", start, persona="online_buyer"),
        event_line(f"{customer}-2", customer, "web.product_page", start + 10),
        event_line(f"{customer}-3", customer, "web.cart", start + 20),
        event_line(f"{customer}-4", customer, "web.checkout", start + 30),
        event_line(f"{customer}-5", customer, "email.order_confirmation", start + 31),
    ]
