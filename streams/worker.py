"""The Faust app (built by a factory, nothing at import): journey agent, sink agents, timer, web."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import faust
import structlog

from events.codec import check_event
from events.errors import Rejection
from projections.customer import CustomerState
from projections.engine import JourneyEngine
from projections.journeys import JourneyModel
from projections.state_codec import decode_state, encode_state
from streams import topics
from streams.settings import Settings
from streams.sink import Delivered, ProjectionSink, bad_headers, encode_update
from streams.store import ClickHouseProjectionStore, StoreError
from streams.worker_alerts import install_alerting

log = structlog.get_logger("touchpath.worker")

JOURNEY_BATCH = 500
SINK_BATCH = 2_000
TICK_SECONDS = 1.0


class TableStates(MutableMapping[str, CustomerState]):
    """Customer states cached in memory, loaded on demand from the changelog-backed Faust table.

    Writes stay in the cache until persist() is called after the derived rows were delivered,
    so the durable state never runs ahead of what downstream has received.
    """

    def __init__(self, table: Any, model: JourneyModel) -> None:
        self.table = table
        self.model = model
        self.cache: dict[str, CustomerState] = {}

    def __getitem__(self, customer_id: str) -> CustomerState:
        state = self.cache.get(customer_id)
        if state is None:
            raw = self.table.get(customer_id.encode())
            if raw is None:
                raise KeyError(customer_id)
            state = self.cache[customer_id] = decode_state(raw, self.model)
        return state

    def __setitem__(self, customer_id: str, state: CustomerState) -> None:
        self.cache[customer_id] = state

    def __delitem__(self, customer_id: str) -> None:
        self.cache.pop(customer_id, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self.cache)

    def __len__(self) -> int:
        return len(self.cache)

    def persist(self, state: CustomerState) -> None:
        """Write one state to the table (and so to its changelog topic)."""
        self.table[state.customer_id.encode()] = encode_state(state)

    def recovered(self) -> Iterator[CustomerState]:
        """Every state held by the table for this worker's partitions."""
        for _, raw in self.table.items():
            yield decode_state(raw, self.model)


@dataclass(slots=True)
class WorkerMetrics:
    """Counters exposed on /metrics and /health."""

    events_in: int = 0
    bad: int = 0
    duplicates: int = 0
    updates_out: int = 0
    sink_rows: int = 0
    sink_errors: int = 0
    insert_seconds: list[float] = field(default_factory=list)
    # Event-to-row latency (ms): Kafka timestamp of the input record to its rows being inserted.
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=5_000))
    processed: dict[tuple[str, int], int] = field(default_factory=dict)  # next offset per TP


def create_app(
    settings: Settings, model: JourneyModel, store: ClickHouseProjectionStore, web_port: int
) -> Any:
    """Build the Faust app for this worker; topics must exist already (see topics.ensure_topics)."""
    names = topics.TopicNames.with_prefix(settings.topic_prefix)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store=settings.state_store,
        autodiscover=False,
        datadir=str(settings.data_dir / "faust"),  # Faust's own files, never the working directory
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_commit_every=JOURNEY_BATCH,
        broker_commit_interval=1.0,
        producer_acks=-1,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 10),
        web_enabled=True,
        web_host="127.0.0.1" if settings.web_host is None else settings.web_host,
        web_port=web_port,
        web_in_thread=False,
    )
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    source = app.topic(names.touchpoints, partitions=settings.partitions, **raw)
    bad_topic = app.topic(names.bad, partitions=settings.partitions, **raw)
    derived = app.topic(names.journey_events, partitions=settings.partitions, **raw)
    # use_partitioner: a changelog record goes to the partition the producer's partitioner picks for
    # the customer key - the same one the touchpoints record had (SDK producers key by customer_id).
    table = app.Table(
        "journey-state",
        default=None,
        partitions=settings.partitions,
        use_partitioner=True,
        key_type=bytes,  # bytes types make Faust use the raw codec, also when it recovers the table
        value_type=bytes,
    )
    states = TableStates(table, model)
    engine = JourneyEngine(model, "live", states)
    sink = ProjectionSink(store)
    metrics = WorkerMetrics()
    partition_time: dict[int, int] = {}  # latest event time per touchpoints partition
    lock = asyncio.Lock()
    rescan = {"needed": True}

    source_ts: dict[str, list[int]] = {}  # Kafka timestamps of this batch's records per customer

    async def publish_and_persist() -> None:
        updates = engine.drain_updates()
        for update in updates:
            stamps = source_ts.pop(update.customer_id, ())
            value = encode_update(update, engine.scenario, stamps)
            await derived.send(key=update.customer_id.encode(), value=value)
        source_ts.clear()
        # Durable downstream first, then the state: a crash in between replays the events, and the
        # engine re-derives the same rows (same versions), which the projections collapse.
        await app.producer.flush()
        for update in updates:
            states.persist(update.state)
        metrics.updates_out += len(updates)

    def refresh_after_rebalance() -> None:
        # After start or a rebalance (with the lock held, between batches): drop cached states of
        # partitions that may have moved, and reload open instances from the table so timeouts
        # fire for customers this process has not seen since it started.
        if not rescan["needed"] or app.rebalancing or app.in_recovery:
            return
        engine.forget_cached()
        states.cache.clear()
        for state in states.recovered():
            engine.schedule(state)
        rescan["needed"] = False

    @app.agent(source, concurrency=1)
    async def journeys(stream: Any) -> None:
        async for batch in stream.take_events(JOURNEY_BATCH, within=0.2):
            async with lock:
                refresh_after_rebalance()
                for event in batch:
                    message = event.message
                    metrics.events_in += 1
                    decoded = check_event(event.value)
                    if isinstance(decoded, Rejection):
                        engine.count_bad()
                        await _quarantine(bad_topic, event.value, decoded, message, metrics)
                        continue
                    before = engine.counters.duplicates
                    # A customer's events all come from one partition: lateness is measured against
                    # that partition's progress, not against faster partitions.
                    occurred = decoded.occurred_ms
                    stream_time = max(partition_time.get(message.partition, occurred), occurred)
                    partition_time[message.partition] = stream_time
                    rejection = engine.accept(decoded, stream_time)
                    source_ts.setdefault(decoded.customer_id, []).append(int(message.timestamp * 1000))
                    metrics.duplicates += engine.counters.duplicates - before
                    if rejection is not None:
                        await _quarantine(bad_topic, event.value, rejection, message, metrics)
                await publish_and_persist()
                for event in batch:  # processed = its derived rows are in Kafka
                    metrics.processed[(event.message.topic, event.message.partition)] = (
                        event.message.offset + 1
                    )

    async def run_sink(stream: Any) -> None:
        async for batch in stream.take_events(SINK_BATCH, within=0.5):
            delivered = [
                Delivered(e.message.topic, e.message.partition, e.message.offset, e.value, _headers(e))
                for e in batch
            ]
            await _write_until_done(sink, delivered, metrics)
            for e in batch:  # processed = its rows are in ClickHouse (what /health's lag means)
                metrics.processed[(e.message.topic, e.message.partition)] = e.message.offset + 1

    app.agent(derived, name="sink-journey-events", concurrency=1)(run_sink)
    app.agent(bad_topic, name="sink-quarantine", concurrency=1)(run_sink)

    async def tick() -> None:
        if app.rebalancing or app.in_recovery:
            return
        async with lock:
            refresh_after_rebalance()
            await publish_and_persist()

    app.timer(interval=TICK_SECONDS)(tick)
    if settings.stream_alerts:
        # Not yet verified end to end on the broker (see streams/worker_alerts.py): opt-in for now.
        install_alerting(app, model, store, names, settings.partitions)

    def on_rebalance(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        rescan["needed"] = True

    app.on_partitions_revoked.connect(on_rebalance)
    app.on_partitions_assigned.connect(on_rebalance)

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        lag = await _lag(app, metrics, names)
        body = {
            "status": "ok" if not app.rebalancing else "rebalancing",
            "events_in": metrics.events_in,
            "bad": metrics.bad,
            "duplicates": metrics.duplicates,
            "sink_rows": metrics.sink_rows,
            "lag": lag,
            "assigned": _assigned(app, names.touchpoints),
            "latency_ms_p50": _quantile(metrics.latencies, 0.5),
            "latency_ms_p99": _quantile(metrics.latencies, 0.99),
            "latency_samples": len(metrics.latencies),
        }
        return web.json(body)

    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        lag = await _lag(app, metrics, names)
        return web.text(_prometheus(metrics, lag), content_type="text/plain; version=0.0.4")

    return app


async def _quarantine(
    bad_topic: Any, raw: bytes, rejection: Rejection, message: Any, metrics: WorkerMetrics
) -> None:
    metrics.bad += 1
    await bad_topic.send(
        key=message.key,
        value=raw,
        headers=bad_headers(rejection, message.topic, message.partition, message.offset),
    )


def _headers(event: Any) -> dict[str, bytes]:
    headers = event.headers or {}
    if isinstance(headers, dict):
        return {str(k): bytes(v) for k, v in headers.items()}
    return {str(k): bytes(v) for k, v in headers}


async def _write_until_done(sink: ProjectionSink, delivered: list[Delivered], metrics: WorkerMetrics) -> None:
    """Insert, retrying with backoff: offsets are only committed once the rows are in ClickHouse."""
    delay = 0.5
    loop = asyncio.get_running_loop()
    while True:
        started = time.perf_counter()
        try:
            written, source_ts = await loop.run_in_executor(None, sink.write, delivered)
            visible_ms = time.time() * 1000
            metrics.sink_rows += written
            metrics.latencies.extend(visible_ms - ts for ts in source_ts)
            metrics.insert_seconds.append(time.perf_counter() - started)
            del metrics.insert_seconds[:-1000]
            return
        except StoreError as error:
            metrics.sink_errors += 1
            log.warning("sink.insert_failed", error=str(error), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def _lag(app: Any, metrics: WorkerMetrics, names: topics.TopicNames) -> int:
    """Messages not yet processed on the assigned partitions; -1 until the worker is ready."""
    total = 0
    if app.rebalancing or app.in_recovery:
        return -1
    try:
        assignment = app.consumer.assignment()
        if not assignment:
            return -1
        highwaters = await app.consumer.highwaters(*assignment)
    except Exception:  # consumer not ready yet: report no lag figure
        return -1
    for tp, high in highwaters.items():
        if tp.topic in (names.touchpoints, names.journey_events, names.bad):
            done = metrics.processed.get((tp.topic, tp.partition))
            if done is None:
                done = _committed(app, tp)
            total += max(0, int(high) - done)
    return total


def _assigned(app: Any, topic: str) -> int:
    """How many partitions of the input topic this worker owns now."""
    try:
        return sum(1 for tp in app.consumer.assignment() if tp.topic == topic)
    except Exception:  # consumer not started yet
        return 0


def _committed(app: Any, tp: Any) -> int:
    """Committed offset of a partition this process has not consumed from yet (0 if none).

    Faust keeps the offsets it sought to on assignment in a private map; there is no public API.
    """
    offset = getattr(app.consumer, "_committed_offset", {}).get(tp)
    return int(offset or 0)


def _quantile(values: Iterable[float], share: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * share))], 1) if ordered else None


def _prometheus(metrics: WorkerMetrics, lag: int) -> str:
    latencies = sorted(metrics.insert_seconds)
    p50 = latencies[len(latencies) // 2] if latencies else 0.0
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0.0
    lines = [
        "# TYPE touchpath_events_in_total counter",
        f"touchpath_events_in_total {metrics.events_in}",
        "# TYPE touchpath_bad_events_total counter",
        f"touchpath_bad_events_total {metrics.bad}",
        "# TYPE touchpath_duplicate_events_total counter",
        f"touchpath_duplicate_events_total {metrics.duplicates}",
        "# TYPE touchpath_sink_rows_total counter",
        f"touchpath_sink_rows_total {metrics.sink_rows}",
        "# TYPE touchpath_sink_errors_total counter",
        f"touchpath_sink_errors_total {metrics.sink_errors}",
        "# TYPE touchpath_consumer_lag gauge",
        f"touchpath_consumer_lag {lag}",
        "# TYPE touchpath_event_to_row_latency_ms summary",
        f'touchpath_event_to_row_latency_ms{{quantile="0.5"}} {_quantile(metrics.latencies, 0.5) or 0}',
        f'touchpath_event_to_row_latency_ms{{quantile="0.99"}} {_quantile(metrics.latencies, 0.99) or 0}',
        "# TYPE touchpath_batch_insert_seconds summary",
        f'touchpath_batch_insert_seconds{{quantile="0.5"}} {p50:.6f}',
        f'touchpath_batch_insert_seconds{{quantile="0.99"}} {p99:.6f}',
        f"touchpath_batch_insert_seconds_count {len(latencies)}",
    ]
    return "\n".join(lines) + "\n"


def run_worker(settings: Settings, model: JourneyModel, web_port: int) -> None:
    """Create topics, open the store, and run one worker until it is stopped."""
    topics.ensure_topics(
        settings.kafka_bootstrap,
        topics.TopicPlan(partitions=settings.partitions),
        names=topics.TopicNames.with_prefix(settings.topic_prefix),
    )
    if settings.clickhouse_url:
        store = ClickHouseProjectionStore.server(settings.clickhouse_url, settings.clickhouse_cluster)
    else:
        store = ClickHouseProjectionStore.embedded(settings.data_dir)
    store.create_schema()
    app = create_app(settings, model, store, web_port)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    finally:
        store.close()
