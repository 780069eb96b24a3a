"""Control records on the input topic (erase a customer): a header marks them, the key names the customer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from streams.worker.gapfill import Incoming

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
