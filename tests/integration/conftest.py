"""Session fixtures for integration tests that need a real Kafka broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kafka_broker import kafka_broker


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of $TOUCHPATH_KAFKA_BOOTSTRAP, or of a broker started for this session."""
    with kafka_broker() as bootstrap:
        yield bootstrap
