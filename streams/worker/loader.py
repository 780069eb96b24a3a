"""The loader: journey-events batch records into the projection store, each batch once, in chain order."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import structlog
from kafka import KafkaConsumer, TopicPartition

from projections import schema
from streams.store.protocol import ProjectionStore
from streams.worker.records import Chain, Kind, Record, decode, decode_header, is_batch_record

log = structlog.get_logger("touchpath.worker.loader")
T = TypeVar("T")

TABLES = {table.name: table for table in schema.TABLES}
LOAD_ROWS = 50_000  # rows gathered before an insert while catching up
LOAD_WAIT_S = 0.3  # longest a polled record waits for more before it is inserted
LAG_EVERY_S = 0.25
IDLE_FLUSH_S = 2.0


@dataclass(slots=True)
class LoaderCounters:
    """What the loader did, for /health and /metrics."""

    records: int = 0  # journey-events records read
    batches: int = 0  # batches loaded (counted by the chain)
    ignored: int = 0  # batches outside the chain: written twice or by a former owner
    rows: int = 0
    inserts: int = 0
    store_errors: int = 0
    store_error: str | None = None  # the last refusal while it lasts
    lag: int = -1  # journey-events records not loaded yet; -1 until known
    insert_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=1_000))


# visible(arrivals_ms, visible_ms): rows of input events that arrived at these times are stored now.
RowsVisible = Callable[[Sequence[int], float], None]


class BatchObserver(Protocol):
    """Alerting as the loader feeds it (streams.worker.alerts.StreamAlerting)."""

    def offer(self, partition: int, offset: int, record: Record) -> None:
        """One record of the chain (rows decoded for batches), in offset order per partition."""

    def rows(self) -> dict[str, list[tuple[object, ...]]]:
        """Rows to store with the batches offered since the last call (alerts, their state)."""

    def stored(self) -> None:
        """Those rows are stored: publish and deliver what they hold."""


class LoaderView(Protocol):
    """What the worker's /health and /metrics read of a loader: a thread (Loader) or a process
    (streams.worker.loader_process.LoaderProcess)."""

    counters: LoaderCounters

    def start(self) -> None:
        """Start loading."""

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the current insert and stop."""

    def take_crashes(self) -> list[BaseException]:
        """Crashes not yet reported (each once)."""


class Loader:
    """Reads every journey-events partition given to it and writes the batches' rows.

    Exactly-once into the store: per partition the next journey-events offset and the chain's next
    input offset are kept in sink_progress, written after the rows; a batch re-read after a crash
    is re-inserted under ReplacingMergeTree keys (and the same dedup token when the span matches).
    """

    def __init__(
        self,
        store: ProjectionStore,
        *,
        bootstrap: str,
        topic: str,
        input_topic: str,
        consumer_id: str,
        partitions: int,
        observer: BatchObserver | None = None,
        visible: RowsVisible | None = None,
    ) -> None:
        self.store = store
        self.bootstrap = bootstrap
        self.topic = topic
        self.input_topic = input_topic
        self.consumer_id = consumer_id
        self.partitions = partitions
        self.observer = observer
        self.visible = visible  # event-to-row latency: the process's health (WorkerHealth.rows_written)
        self.counters = LoaderCounters()
        self.stopping = threading.Event()
        self.failed: BaseException | None = None
        self._failure_taken = False
        self.thread = threading.Thread(target=self._run, name="touchpath-loader", daemon=True)
        self.chains: dict[int, Chain] = defaultdict(Chain)
        self.next: dict[int, int] = {}  # per journey-events partition: next offset to load

    def start(self) -> None:
        """Load in a thread of this process until stop()."""
        self.thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the current insert and stop."""
        self.stopping.set()
        self.thread.join(timeout)

    def take_crashes(self) -> list[BaseException]:
        """The loader thread's crash, once: it is not restarted (the worker stays degraded)."""
        if self.failed is None or self._failure_taken:
            return []
        self._failure_taken = True
        return [self.failed]

    def _run(self) -> None:
        try:
            self._load_forever()
        except BaseException as error:
            self.failed = error
            log.exception("loader.crashed")

    def _load_forever(self) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
            fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=32 * 1024 * 1024,
        )  # fmt: skip
        try:
            tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            consumer.assign(tps)
            self._resume(consumer, tps)
            lag_at = flushed_at = 0.0
            while not self.stopping.is_set():
                gathered = self._gather(consumer)
                now = time.monotonic()
                # Idle: still write what alerting has (delivery attempts finish after their alerts).
                if gathered or (self.observer is not None and now - flushed_at >= IDLE_FLUSH_S):
                    self.load(gathered)
                    flushed_at = now
                if now - lag_at >= LAG_EVERY_S:
                    ends = consumer.end_offsets(tps)
                    self.counters.lag = sum(max(0, ends[tp] - self.next.get(tp.partition, 0)) for tp in tps)
                    lag_at = now
        finally:
            consumer.close()

    def _resume(self, consumer: KafkaConsumer, tps: list[TopicPartition]) -> None:
        _, rows = self._until_stored(
            lambda: self.store.query(
                "SELECT topic, partition, next_offset FROM sink_progress FINAL "
                "WHERE scenario = 'live' AND consumer = {consumer:String}",
                {"consumer": self.consumer_id},
            )
        )
        kept = {(str(topic), int(partition)): int(offset) for topic, partition, offset in rows}
        beginning = consumer.beginning_offsets(tps)
        for tp in tps:
            start = kept.get((self.topic, tp.partition), beginning[tp])
            self.next[tp.partition] = start
            self.chains[tp.partition] = Chain(kept.get((self.input_topic, tp.partition)))
            consumer.seek(tp, start)

    def _gather(self, consumer: KafkaConsumer) -> list[tuple[int, int, bytes, int]]:
        out: list[tuple[int, int, bytes, int]] = []
        rows = 0
        started = time.monotonic()
        while not self.stopping.is_set():
            polled = consumer.poll(timeout_ms=100, max_records=2_000)
            if not polled:
                # Records in hand wait up to LOAD_WAIT_S for more: an insert and alerting cost the
                # same for one batch as for several, and the journey side publishes every ~0.2 s.
                if time.monotonic() - started > (LOAD_WAIT_S if out else 0.5):
                    break
                continue
            for tp, records in polled.items():
                for r in records:
                    out.append((tp.partition, r.offset, r.value or b"", int(r.timestamp)))
                    rows += len(r.value or b"")
            if rows > 32 * 1024 * 1024 or time.monotonic() - started > LOAD_WAIT_S:
                break
        return out

    def load(self, gathered: list[tuple[int, int, bytes, int]]) -> None:
        """Write the rows of these (partition, offset, value, timestamp) records, then the progress."""
        groups: dict[str, list[tuple[object, ...]]] = defaultdict(list)
        tokens: dict[str, str] = {}
        spans: dict[int, tuple[int, int]] = {}
        source_ts: list[int] = []
        counters = self.counters
        for partition, offset, value, _ in sorted(gathered, key=lambda g: (g[0], g[1])):
            counters.records += 1
            low, _high = spans.get(partition, (offset, offset))
            spans[partition] = (low, offset)
            self.next[partition] = offset + 1
            if not is_batch_record(value):
                continue  # a per-customer message of the earlier format
            header = decode_header(value)
            if header.kind is Kind.BATCH:
                if not self.chains[partition].accepts(header):
                    counters.ignored += 1
                    continue
                record = decode(value, states=False)
                counters.batches += 1
                for table, rows in record.rows.items():
                    groups[table].extend(map(tuple, rows))
                source_ts.extend(record.source_ts)
            else:
                record = header
            if self.observer is not None and record.kind is not Kind.SNAPSHOT:
                self.observer.offer(partition, offset, record)
        # The dedup token names the records a retried insert holds; alerting's rows depend on its state
        # as well, so theirs name their content (a token reused for other rows drops them).
        span_text = ";".join(f"{self.topic}:{p}:{lo}-{hi}" for p, (lo, hi) in sorted(spans.items()))
        batch_id = hashlib.blake2b(span_text.encode(), digest_size=16).hexdigest()
        for table in groups:
            tokens[table] = f"{batch_id}:{table}"
        if self.observer is not None:
            for table, rows in self.observer.rows().items():
                groups[table].extend(rows)
                content = hashlib.blake2b(repr(rows).encode(), digest_size=16).hexdigest()
                tokens[table] = f"{content}:{table}"
        started = time.perf_counter()
        for table, rows in sorted(groups.items()):
            if rows:
                self._insert(table, rows, tokens[table])
                counters.inserts += 1
                counters.rows += len(rows)
        progress: list[tuple[object, ...]] = []
        for partition in sorted(spans):
            version = self.next[partition]
            progress.append(("live", self.consumer_id, self.topic, partition, version, version, 0))
            chain_next = self.chains[partition].next
            if chain_next is not None:
                progress.append(
                    ("live", self.consumer_id, self.input_topic, partition, chain_next, version, 0)
                )
        if progress:
            self._until_stored(lambda: self.store.insert_rows(schema.SINK_PROGRESS, progress))
        visible_ms = time.time() * 1000
        counters.insert_seconds.append(time.perf_counter() - started)
        if self.visible is not None:
            self.visible(source_ts, visible_ms)
        if self.observer is not None:
            self.observer.stored()
        log.debug(
            "loader.load",
            records=len(gathered),
            rows=sum(map(len, groups.values())),
            seconds=round(time.perf_counter() - started, 3),
        )

    def _insert(self, table: str, rows: list[tuple[object, ...]], token: str) -> None:
        self._until_stored(lambda: self.store.insert_rows(TABLES[table], rows, token=token))

    def _until_stored(self, call: Callable[[], T]) -> T:
        """Run a store call until it succeeds, backing off; /health shows the error meanwhile
        (nothing after it is written until it lands)."""
        delay = 0.5
        while True:
            try:
                result = call()
            except Exception as error:
                self.counters.store_errors += 1
                self.counters.store_error = str(error)
                log.warning("loader.store_refused", error=str(error), retry_in_s=delay)
                if self.stopping.wait(delay):
                    raise
                delay = min(delay * 2, 30.0)
            else:
                self.counters.store_error = None
                return result
