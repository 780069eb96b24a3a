"""Control records on the input topic (erase a customer): a header marks them, the key names the customer."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from streams.worker.gapfill import Incoming

if TYPE_CHECKING:
    from streams.store.clickhouse import ClickHouseProjectionStore

CONTROL_HEADER = "touchpath-control"  # an input record with this header is no event
ERASE = b"erase"  # ... and with this value it erases the customer its key names


Headers = tuple[tuple[str, bytes], ...]


def headers_of(raw: Mapping[str, bytes] | Sequence[tuple[str, bytes]] | None) -> Headers:
    """A Kafka record's headers as Incoming keeps them (clients give a list of pairs or a mapping)."""
    if not raw:
        return ()
    pairs: Any = raw.items() if isinstance(raw, Mapping) else raw
    return tuple((str(key), bytes(value or b"")) for key, value in pairs)


def erased_customer(record: Incoming) -> str | None:
    """The customer an erase control record erases; None for a record without the control header
    (an event); "" for a control record that erases nobody (another kind, no key): it is skipped,
    never folded as an event nor quarantined."""
    for key, value in record.headers:
        if key == CONTROL_HEADER:
            if value != ERASE or not record.key:
                return ""
            return record.key.decode("utf-8", "replace")
    return None


def send_erasures(bootstrap: str, topic: str, customer_ids: Sequence[str]) -> list[tuple[int, int]] | None:
    """Write one erase control record per customer to the input topic, keyed by the id (Kafka's
    default partitioner, murmur2: the customer's home partition, after its events so far); returns
    (partition, offset) of each once the broker has them all (acks=all). None when the topic does
    not exist (no worker reads it; nothing is written, so no topic is created by accident)."""
    from kafka import KafkaProducer  # noqa: PLC0415 -- only erasures with --kafka need it
    from kafka.admin import KafkaAdminClient  # noqa: PLC0415

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="touchpath-erase")
    try:
        exists = topic in admin.list_topics()
    finally:
        admin.close()
    if not exists:
        return None
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", client_id="touchpath-erase")
    try:
        futures = [
            producer.send(topic, key=customer.encode(), value=b"", headers=[(CONTROL_HEADER, ERASE)])
            for customer in customer_ids
        ]
        producer.flush(timeout=30)
        return [(int(m.partition), int(m.offset)) for m in (future.get(timeout=30) for future in futures)]
    finally:
        producer.close(timeout=5)


def loader_pending(
    store: ClickHouseProjectionStore,
    consumer: str,
    input_topic: str,
    placed: Sequence[tuple[int, int]],
    *,
    wait_s: float = 0.0,
) -> dict[int, int]:
    """Input partitions whose erase record (partition, offset) the worker's loader has not stored
    past yet (sink_progress: the chain's next input offset), with the erase record's offset; polled
    for up to wait_s. A store no worker of this app id loads into has nothing pending."""
    wanted: dict[int, int] = {}
    for partition, offset in placed:
        wanted[partition] = max(wanted.get(partition, -1), offset)
    deadline = time.monotonic() + wait_s
    if not store.scalar(
        "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'sink_progress'"
    ):
        return {}
    while True:
        _, rows = store.query(
            "SELECT partition, next_offset FROM sink_progress FINAL WHERE scenario = 'live' "
            "AND consumer = {consumer:String} AND topic = {topic:String}",
            {"consumer": consumer, "topic": input_topic},
        )
        if not rows:
            return {}
        stored = {int(partition): int(offset) for partition, offset in rows}
        pending = {p: o for p, o in wanted.items() if stored.get(p, 0) <= o}
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(1.0)
