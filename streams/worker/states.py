"""Journey states of the partitions a worker owns: in memory, recovered from journey-events, snapshotted."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition

from projections.customer import CustomerState
from projections.journeys import JourneyModel
from projections.state_codec import decode_state
from streams.worker.records import Kind, Record, Recovered, Replayer, decode_header

SNAPSHOT_CHUNK_STATES = 2_000  # states per snapshot record
SNAPSHOT_MIN_BYTES = 4 * 1024 * 1024  # no snapshot before this much state was written since the last
SNAPSHOT_EVERY_S = 3600.0  # and at least this often while a partition is written to


class PartitionStates(MutableMapping[str, CustomerState]):
    """The engine's customer states, each kept with the input partition its events arrive on.

    The agent names the partition of the record it is about to fold (`current`); a customer seen for
    the first time belongs to it. A revoked partition's customers are dropped in one call.
    """

    def __init__(self) -> None:
        self.states: dict[str, CustomerState] = {}
        self.partition_of: dict[str, int] = {}
        self.current = 0

    def __getitem__(self, customer_id: str) -> CustomerState:
        return self.states[customer_id]

    def __setitem__(self, customer_id: str, state: CustomerState) -> None:
        self.states[customer_id] = state
        self.partition_of.setdefault(customer_id, self.current)

    def __delitem__(self, customer_id: str) -> None:
        del self.states[customer_id]
        self.partition_of.pop(customer_id, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self.states)

    def __len__(self) -> int:
        return len(self.states)

    def get(self, customer_id: str, default: CustomerState | None = None) -> CustomerState | None:  # type: ignore[override]
        """A state or default (the engine's hot path: no KeyError raised)."""
        return self.states.get(customer_id, default)

    def load(self, partition: int, states: dict[str, CustomerState]) -> None:
        """Take a recovered partition's states."""
        for customer_id, state in states.items():
            self.states[customer_id] = state
            self.partition_of[customer_id] = partition

    def place(self, customer_id: str, partition: int) -> None:
        """Note a customer's partition when its states live elsewhere (the native engine's core)."""
        self.partition_of.setdefault(customer_id, partition)

    def forget(self, customer_id: str) -> None:
        """Forget one customer (erased)."""
        self.states.pop(customer_id, None)
        self.partition_of.pop(customer_id, None)

    def drop(self, partition: int) -> None:
        """Forget a partition's customers (it went to another worker)."""
        for customer_id in self.customers_of(partition):
            self.states.pop(customer_id, None)
            del self.partition_of[customer_id]

    def customers_of(self, partition: int) -> list[str]:
        """The ids of one partition's customers."""
        return [c for c, owner in self.partition_of.items() if owner == partition]

    def of_partition(self, partition: int) -> list[CustomerState]:
        """Every state of one partition."""
        return [self.states[c] for c, owner in self.partition_of.items() if owner == partition]


@dataclass(slots=True)
class SnapshotPolicy:
    """When a partition's states are written whole, so recovery reads little: once the states
    written since the last snapshot outweigh it (and SNAPSHOT_MIN_BYTES), or SNAPSHOT_EVERY_S."""

    written: int = 0  # state bytes written in batches since the last snapshot
    last_size: int = 0
    last_at: float = 0.0

    def due(self, now: float) -> bool:
        """Whether the partition should be snapshotted now."""
        if self.written == 0:
            return False
        if self.last_at == 0.0:
            self.last_at = now  # the first batch since start: the clock starts here
        return (
            self.written >= max(SNAPSHOT_MIN_BYTES, 2 * self.last_size)
            or now - self.last_at >= SNAPSHOT_EVERY_S
        )


def snapshot_records(
    partition: int, encoded: list[tuple[str, bytes]], next_offset: int, stream_time: int | None, snap: int
) -> list[Record]:
    """The chunks of one snapshot of a partition (between batches, at chain position next_offset)
    from its (customer id, state_codec bytes)."""
    snapshot_id = uuid.uuid4().hex
    chunks = [
        encoded[i : i + SNAPSHOT_CHUNK_STATES] for i in range(0, len(encoded), SNAPSHOT_CHUNK_STATES)
    ] or [[]]
    return [
        Record(
            Kind.SNAPSHOT,
            partition,
            next=next_offset,
            stream_time=stream_time,
            snap=snap,
            states=dict(chunk),
            snapshot_id=snapshot_id,
            chunk=number,
            chunks=len(chunks),
        )
        for number, chunk in enumerate(chunks)
    ]


def recover_partition(bootstrap: str, topic: str, partition: int, *, timeout: float = 300.0) -> Recovered:
    """A partition's states from its journey-events records: the last record says where the latest
    complete snapshot starts; read from there (or the start) to the end. Blocking: run in a thread."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=64 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    tp = TopicPartition(topic, partition)
    try:
        consumer.assign([tp])
        start = consumer.beginning_offsets([tp])[tp]
        end = consumer.end_offsets([tp])[tp]
        if end <= start:
            return Recovered()
        last = _read(consumer, tp, end - 1, end, timeout)
        snap = decode_header(last[-1][1]).snap if last and last[-1][1][:4] == b"TPB1" else -1
        replayer = Replayer()
        begin = snap if snap >= start else start
        for offset, value in _read(consumer, tp, begin, end, timeout):
            replayer.offer(offset, value)
        replayer.result.snap = snap
        replayer.result.last_offset = end - 1
        return replayer.result
    finally:
        consumer.close()


def latest_event_time(bootstrap: str, topic: str, partitions: int) -> int | None:
    """The latest event time any journey-events partition reports (each record's header carries its
    input partition's): what the workers owning the other partitions have reached. Blocking."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        latest: int | None = None
        for tp in tps:
            if ends[tp] == 0:
                continue
            for _, value in _read(consumer, tp, ends[tp] - 1, ends[tp], 30.0):
                if value[:4] == b"TPB1":
                    time_there = decode_header(value).stream_time
                    if time_there is not None and (latest is None or time_there > latest):
                        latest = time_there
        return latest
    finally:
        consumer.close()


def _read(
    consumer: KafkaConsumer, tp: TopicPartition, start: int, end: int, timeout: float
) -> list[tuple[int, bytes]]:
    consumer.seek(tp, start)
    out: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + timeout
    while consumer.position(tp) < end:
        if time.monotonic() > deadline:
            msg = f"could not read {tp.topic}/{tp.partition} offsets {start}..{end - 1} in {timeout:.0f} s"
            raise TimeoutError(msg)
        for records in consumer.poll(timeout_ms=500).values():
            out.extend(
                (r.offset, r.value) for r in records if start <= r.offset < end and r.value is not None
            )
    return out


def decode_states(recovered: Recovered, model: JourneyModel) -> dict[str, CustomerState]:
    """The recovered states as the engine holds them."""
    return {customer_id: decode_state(raw, model) for customer_id, raw in recovered.states.items()}
