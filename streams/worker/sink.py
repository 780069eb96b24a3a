"""Derived-row messages: their wire form, and the sink that writes them to ClickHouse idempotently."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from events.errors import BadReason, Rejection
from projections import schema
from projections.engine import CustomerUpdate, Row
from projections.intake import quarantine_row
from streams.store.protocol import ProjectionStore

TABLES = {table.name: table for table in schema.TABLES}


def encode_update(update: CustomerUpdate, scenario: str, source_ts: Sequence[int] = ()) -> bytes:
    """One `journey_update` message: the rows a customer's events produced (other systems may
    subscribe to these: they carry steps, deviations, friction, completion and corrections).
    source_ts are the times (ms) the input records arrived at the worker, for event-to-row latency."""
    rows = {name: rows for name, rows in update.rows.rows.items() if rows}
    return orjson.dumps(
        {
            "type": "journey_update",
            "scenario": scenario,
            "customer_id": update.customer_id,
            "rows": rows,
            "source_ts": list(source_ts),
        }
    )


def encode_progress(partition: int, stream_time: int) -> bytes:
    """One `progress` message: the input partition's event time has reached stream_time (events
    later than this on that partition are late). Sent to the derived partition of the same number,
    behind that partition's journey updates, so a consumer knows what it has seen everything of."""
    return orjson.dumps({"type": "progress", "partition": partition, "stream_time": stream_time})


def bad_headers(rejection: Rejection, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """Kafka headers of a quarantined message: the typed reason and where it came from."""
    return [
        ("reason", rejection.reason.value.encode()),
        ("field", (rejection.field or "").encode()),
        ("detail", rejection.detail.encode()),
        ("source", f"{topic}/{partition}".encode()),
        ("offset", str(offset).encode()),
    ]


def rejection_of(headers: Mapping[str, bytes]) -> Rejection:
    """The rejection that bad_headers() wrote into a quarantined message's headers."""
    text, detail = headers["reason"].decode(), headers.get("detail", b"").decode()
    try:
        reason = BadReason(text)
    except ValueError:  # written by a newer worker: keep the message, say what it was
        reason, detail = BadReason.SCHEMA_VIOLATION, f"{text}: {detail}"
    return Rejection(reason, detail, headers.get("field", b"").decode() or None)


@dataclass(frozen=True, slots=True)
class Delivered:
    """One consumed message as the sink sees it."""

    topic: str
    partition: int
    offset: int
    value: bytes
    headers: Mapping[str, bytes]


@dataclass(slots=True)
class SinkStats:
    """What the sink wrote, for /metrics."""

    messages: int = 0
    rows: int = 0
    inserts: int = 0
    insert_seconds: list[float] = field(default_factory=list)


class ProjectionSink:
    """Turns derived and quarantine messages into table inserts.

    Idempotent: a dedup token from (topic, partition, first..last offset, table) makes a retried
    insert of the same messages a no-op, and ReplacingMergeTree versions make any other replay
    (different batch boundaries after a restart) collapse under FINAL.
    """

    def __init__(self, store: ProjectionStore, scenario: str = "live") -> None:
        self.store = store
        self.scenario = scenario
        self.stats = SinkStats()
        self._lock = threading.Lock()

    def write(self, messages: Sequence[Delivered]) -> tuple[int, list[int]]:
        """Insert the rows of these messages; returns (rows, arrival times at the worker of the input
        records they came from). Raises StoreError if ClickHouse refused them."""
        with self._lock:  # sink agents call from executor threads; one insert at a time
            source_ts: list[int] = []
            return self._write(messages, source_ts), source_ts

    def _write(self, messages: Sequence[Delivered], source_ts: list[int]) -> int:
        groups: dict[str, list[Row]] = defaultdict(list)
        spans: dict[tuple[str, int], tuple[int, int]] = {}
        for message in messages:
            key = (message.topic, message.partition)
            low, high = spans.get(key, (message.offset, message.offset))
            spans[key] = (min(low, message.offset), max(high, message.offset))
            for table, rows in self._rows_of(message, source_ts):
                groups[table].extend(rows)
        # One insert per table per batch; the token names exactly which messages it holds.
        span_text = ";".join(f"{t}:{p}:{lo}-{hi}" for (t, p), (lo, hi) in sorted(spans.items()))
        batch_id = hashlib.blake2b(span_text.encode(), digest_size=16).hexdigest()
        written = 0
        for table, rows in sorted(groups.items()):
            started = time.perf_counter()
            self.store.insert_rows(TABLES[table], rows, token=f"{batch_id}:{table}")
            self.stats.insert_seconds.append(time.perf_counter() - started)
            self.stats.inserts += 1
            written += len(rows)
        self.stats.messages += len(messages)
        self.stats.rows += written
        return written

    def _rows_of(self, message: Delivered, source_ts: list[int]) -> Iterable[tuple[str, list[Row]]]:
        if "reason" in message.headers:
            headers = message.headers
            source = headers.get("source", b"").decode()
            row = quarantine_row(
                self.scenario, source, int(headers.get("offset", b"0")), rejection_of(headers), message.value
            )
            yield schema.BAD_EVENTS.name, [row]
            return
        update: dict[str, Any] = orjson.loads(message.value)
        if update.get("type") != "journey_update":
            return  # progress markers carry no rows
        source_ts.extend(update.get("source_ts", ()))
        for table, rows in update["rows"].items():
            yield table, [tuple(row) for row in rows]
