"""Records on another partition than Kafka's default partitioner gives their customer are sent home."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from streams.common.topics import partition_for
from streams.worker.partitioning import REROUTED_FROM, Placement, customer_of


@pytest.mark.parametrize(
    ("key", "partition"),
    [(b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566), (b"\x00 ", 742)],
)
def test_the_home_partition_is_the_java_clients_default_partitioner(key: bytes, partition: int) -> None:
    """Same partition as Kafka's Java producer (murmur2) gives these keys over 1,000 partitions."""
    assert partition_for(key, 1000) == partition


class SentTopic:
    """A Faust topic stand-in that records what was sent; the send is acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, **message: Any) -> asyncio.Future[None]:
        self.sent.append(message)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _line(customer: str) -> bytes:
    return orjson.dumps({"event_id": "e-1", "customer_id": customer, "channel": "web"})


def test_a_record_on_its_customers_partition_stays_and_one_elsewhere_is_sent_home() -> None:
    """Only the misplaced record is re-routed: keyed by its customer, to the murmur2 partition, with
    where it came from in a header."""
    placement = Placement(SentTopic(), partitions=6)
    home = partition_for(b"c-42", 6)
    elsewhere = (home + 1) % 6
    assert placement.home_of(_line("c-42"), home) is None
    assert placement.home_of(_line("c-42"), elsewhere) == ("c-42", home)

    async def reroute() -> None:
        await placement.send_home(_line("c-42"), "c-42", home, ("touchpoints", elsewhere, 17))
        await placement.settle()

    asyncio.run(reroute())
    assert isinstance(placement.topic, SentTopic)
    assert placement.topic.sent == [
        {
            "key": b"c-42",
            "value": _line("c-42"),
            "partition": home,
            "headers": [(REROUTED_FROM, f"touchpoints/{elsewhere}/17".encode())],
        }
    ]
    assert placement.rerouted == 1


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'{"customer_id": 7}', b'{"customer_id": ""}'])
def test_a_record_without_a_customer_is_left_to_the_intake_to_quarantine(raw: bytes) -> None:
    """Bad records belong to no customer's state: they are not moved, the intake quarantines them."""
    assert customer_of(raw) is None
    assert Placement(SentTopic(), partitions=6).home_of(raw, 0) is None
