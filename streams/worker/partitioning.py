"""Input records on another partition than Kafka's default partitioner gives their customer: sent home."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import structlog

from streams.common.topics import partition_for

log = structlog.get_logger("touchpath.worker.partitioning")

REROUTED_FROM = "touchpath-rerouted-from"  # header of a re-routed record: "topic/partition/offset"
_CACHED_CUSTOMERS = 100_000


def customer_of(raw: bytes) -> str | None:
    """The customer a raw touchpoint record belongs to, or None if it names none (the intake
    quarantines such a record wherever it is: a bad record belongs to no customer's state)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    customer = body.get("customer_id") if isinstance(body, dict) else None
    return customer if isinstance(customer, str) and customer else None


class Placement:
    """Checks that each input record is on its customer's partition under Kafka's default
    partitioner (murmur2 of the customer id, as the SDK and kafka-python key it) and re-routes the
    ones that are not.

    A customer's state lives with one partition (its records on the journey-events partition of
    the same number), so a customer must be folded by the one worker that owns that partition: a
    producer with another partitioner (kcat's default is CRC32-based `consistent_random`; explicit
    partition numbers) would otherwise split a customer between workers. A misplaced record is
    produced again, keyed by its customer, to its home partition and not folded here; the worker
    that owns the home partition folds it. A crash before the batch's record (which covers the
    misplaced offset) is in Kafka re-routes it again: the copy has the same event_id, so it is a
    duplicate the engine ignores.
    """

    def __init__(self, topic: Any, partitions: int) -> None:
        self.topic = topic  # the Faust topic of the input (touchpoints)
        self.partitions = partitions
        self.rerouted = 0
        self._homes: dict[str, int] = {}
        self._pending: list[Any] = []

    def home_of(self, raw: bytes, partition: int) -> tuple[str, int] | None:
        """(customer, home partition) of a record read from `partition` that belongs elsewhere;
        None when it is on its home partition or names no customer."""
        customer = customer_of(raw)
        if customer is None:
            return None
        return self.home_of_customer(customer, partition)

    def home_of_customer(self, customer: str, partition: int) -> tuple[str, int] | None:
        """home_of for a customer id (an erase control record's key)."""
        home = self._homes.get(customer)
        if home is None:
            if len(self._homes) >= _CACHED_CUSTOMERS:
                self._homes.clear()
            home = self._homes[customer] = partition_for(customer.encode(), self.partitions)
        return None if home == partition else (customer, home)

    async def send_home(
        self,
        raw: bytes,
        customer: str,
        home: int,
        origin: tuple[str, int, int],
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> None:
        """Produce a misplaced record to its home partition; settle() waits until Kafka has it."""
        topic, partition, offset = origin
        if self.rerouted % 10_000 == 0:  # one line per 10,000 (and the first), not per record
            log.warning(
                "worker.record_rerouted",
                customer_id=customer,
                topic=topic,
                partition=partition,
                offset=offset,
                home=home,
                hint="produce with key=customer_id and Kafka's default partitioner "
                "(murmur2; kcat: -X partitioner=murmur2_random)",
            )
        self.rerouted += 1
        source = f"{topic}/{partition}/{offset}".encode()
        future = await self.topic.send(
            key=customer.encode(), value=raw, partition=home, headers=[*headers, (REROUTED_FROM, source)]
        )
        self._pending.append(future)

    async def settle(self) -> None:
        """Wait until Kafka has every re-routed record: call before the batch's record is sent."""
        if self._pending:
            pending, self._pending = self._pending, []
            await asyncio.gather(*pending)
