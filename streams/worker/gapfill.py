"""Input offsets a Faust stream skipped, read back with a plain kafka-python consumer."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition


@dataclass(frozen=True, slots=True)
class Incoming:
    """One input record as the journey agent folds it (from Faust, or read back here)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()


class GapError(RuntimeError):
    """A skipped offset range could not be read back in time."""


def read_range(
    bootstrap: str, topic: str, partition: int, start: int, end: int, *, timeout: float = 60.0
) -> list[Incoming]:
    """Records [start, end) of one partition (offsets without a record, e.g. transaction markers,
    are simply absent). Blocking: call it from an executor thread."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, consumer_timeout_ms=1000
    )
    tp = TopicPartition(topic, partition)
    out: list[Incoming] = []
    try:
        consumer.assign([tp])
        start = max(start, int(consumer.beginning_offsets([tp])[tp]))  # older ones expired
        consumer.seek(tp, start)
        deadline = time.monotonic() + timeout
        while consumer.position(tp) < end:
            if time.monotonic() > deadline:
                msg = f"could not read back {topic}/{partition} offsets {start}..{end - 1} in {timeout:.0f} s"
                raise GapError(msg)
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(
                    Incoming(
                        topic, partition, r.offset, r.key, r.value, int(r.timestamp),
                        tuple((str(k), bytes(v)) for k, v in (r.headers or ())),
                    )
                    for r in records
                    if start <= r.offset < end
                )  # fmt: skip
    finally:
        consumer.close()
    return out
