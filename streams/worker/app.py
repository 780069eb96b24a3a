"""The Faust app (built by a factory, nothing at import): journey agent, sink agents, timer, web."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import faust
import structlog

from events.errors import Rejection
from projections import schema
from projections.customer import CustomerState
from projections.engine import JourneyEngine
from projections.intake import Intake, Kind
from projections.journeys import JourneyModel
from projections.state_codec import decode_state, encode_state
from streams.common import topics
from streams.common.logs import stdlib_logging_config
from streams.common.settings import Settings
from streams.store.clickhouse import ClickHouseProjectionStore, StoreError
from streams.worker.alerts import install_alerting
from streams.worker.gapfill import Incoming, offsets_key, read_range
from streams.worker.health import Status, WorkerHealth, watch
from streams.worker.partitioning import Placement, send_changelog
from streams.worker.sink import Delivered, ProjectionSink, bad_headers, encode_progress, encode_update

log = structlog.get_logger("touchpath.worker")
T = TypeVar("T")

JOURNEY_BATCH = 2_000
SINK_BATCH = 2_000
TICK_SECONDS = 1.0
PROGRESS_REPEAT_S = 15.0


class TableStates(MutableMapping[str, CustomerState]):
    """Customer states cached in memory, loaded on demand from the changelog-backed Faust table.

    Writes stay in the cache until persist() is called after the derived rows were delivered,
    so the durable state never runs ahead of what downstream has received.
    """

    def __init__(self, table: Any, model: JourneyModel) -> None:
        self.table = table
        self.model = model
        self.cache: dict[str, CustomerState] = {}
        # Outboxes of loaded records, to publish before their records are overwritten.
        self.unsent: dict[str, bytes] = {}

    def __getitem__(self, customer_id: str) -> CustomerState:
        state = self.cache.get(customer_id)
        if state is None:
            raw = self.table.get(customer_id.encode())
            if raw is None:
                raise KeyError(customer_id)
            encoded, outbox = unpack_record(raw)
            state = self.cache[customer_id] = decode_state(encoded, self.model)
            if outbox:
                self.unsent[customer_id] = outbox
        return state

    def __setitem__(self, customer_id: str, state: CustomerState) -> None:
        self.cache[customer_id] = state

    def __delitem__(self, customer_id: str) -> None:
        self.cache.pop(customer_id, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self.cache)

    def __len__(self) -> int:
        return len(self.cache)

    def persist(self, state: CustomerState, outbox: bytes = b"") -> Awaitable[Any]:
        """Write one state, with the derived message it is about to publish (its outbox), to the
        table; the returned future resolves once the broker has the changelog record.

        State first, then the message: a crash in between leaves a state that knows its rows and an
        outbox that recovery publishes again (rows are versioned, so a second copy collapses). The
        other order loses track of published rows: after a restart the events are re-folded in other
        batches, and a deviation or signal published before the crash is never retracted.

        Same two steps as `table[key] = value`, but keeping the changelog future: Faust's own
        producer flush gives up after 0.1 s without progress, so an offset commit could otherwise
        overtake a changelog record still in Faust's buffer.
        """
        key, value = state.customer_id.encode(), pack_record(encode_state(state), outbox)
        future = send_changelog(self.table, key, value)
        self.table.data[key] = value
        return future

    def recovered(self) -> Iterator[tuple[CustomerState, bytes]]:
        """Every state held by the table for this worker's partitions, with its outbox."""
        for key, raw in self.table.items():
            if key[:1] == b"\x00":
                continue  # the worker's own bookkeeping (next offsets), not a customer
            encoded, outbox = unpack_record(raw)
            yield decode_state(encoded, self.model), outbox


_RECORD = b"\x01"  # format of a journey-state table value: 1 + len(state) (4 bytes) + state + outbox


def pack_record(state: bytes, outbox: bytes) -> bytes:
    """A table value: the encoded state and the derived message not yet known to be published."""
    return _RECORD + len(state).to_bytes(4, "big") + state + outbox


def unpack_record(raw: bytes) -> tuple[bytes, bytes]:
    """(encoded state, outbox) of a table value."""
    if raw[:1] != _RECORD:
        msg = f"unknown journey-state record format {raw[:1]!r}"
        raise ValueError(msg)
    size = int.from_bytes(raw[1:5], "big")
    return raw[5 : 5 + size], raw[5 + size :]


@dataclass(slots=True)
class WorkerMetrics:
    """Counters exposed on /metrics and /health."""

    events_in: int = 0
    bad: int = 0
    duplicates: int = 0
    updates_out: int = 0
    sink_rows: int = 0
    sink_errors: int = 0
    # The last ClickHouse error while it persists (cleared by the next successful insert): the
    # sink retries forever and Faust feeds every topic through one loop, so the worker stalls.
    store_error: str | None = None
    insert_seconds: list[float] = field(default_factory=list)
    # Status, agent crashes and event-to-row latency (from the event's arrival at the worker).
    health: WorkerHealth = field(default_factory=WorkerHealth)
    processed: dict[tuple[str, int], int] = field(default_factory=dict)  # next offset per TP
    gaps_filled: int = 0  # input records Faust skipped and the worker read back
    redelivered: int = 0  # input records delivered again (already folded): skipped


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
        producer_max_request_size=topics.MAX_MESSAGE_BYTES,
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
        extra_topic_configs=topics.TOPIC_CONFIGS,
    )
    states = TableStates(table, model)
    engine = JourneyEngine(model, "live", states)
    sink = ProjectionSink(store)
    metrics = WorkerMetrics()
    intake = Intake(engine)  # keeps the latest event time per touchpoints partition
    placement = Placement(source, settings.partitions)
    lock = asyncio.Lock()
    rescan = {"needed": True}

    source_ts: dict[str, list[int]] = {}  # arrival times (ms) of this batch's events per customer

    async def publish_and_persist() -> None:
        updates = engine.drain_updates()
        if states.unsent:
            # Loaded records whose message a crash may have kept from the topic: publish it before
            # the new record (with its own outbox) replaces it.
            for customer_id, outbox in states.unsent.items():
                await derived.send(key=customer_id.encode(), value=outbox)
            await app.producer.flush()
            states.unsent.clear()
        messages = []
        for update in updates:
            stamps = source_ts.pop(update.customer_id, ())
            messages.append(encode_update(update, engine.scenario, stamps))
        source_ts.clear()
        # State (with its outbox) durable first, then the derived messages; the batch's events are
        # acked (so their offsets committable) only after this returns.
        written = [states.persist(u.state, m) for u, m in zip(updates, messages, strict=True)]
        for partition, offset in next_offset.items():
            key, value = offsets_key(partition, settings.partitions), str(offset).encode()
            if table.data.get(key) != value:
                written.append(send_changelog(table, key, value))
                table.data[key] = value
        if written:
            await asyncio.gather(*written)
        for update, message in zip(updates, messages, strict=True):
            await derived.send(key=update.customer_id.encode(), value=message)
        await app.producer.flush()
        metrics.updates_out += len(updates)

    async def republish_outboxes(pending: list[tuple[CustomerState, bytes]]) -> None:
        # Messages a crash may have kept from the derived topic: publish again, then clear them.
        for state, outbox in pending:
            await derived.send(key=state.customer_id.encode(), value=outbox)
        await app.producer.flush()
        cleared = [states.persist(state) for state, _ in pending]
        if cleared:
            await asyncio.gather(*cleared)
        if pending:
            log.info("worker.outboxes_republished", customers=len(pending))

    async def refresh_after_rebalance() -> None:
        # After start or a rebalance (with the lock held, between batches): drop cached states of
        # partitions that may have moved, reload open instances from the table so timeouts fire for
        # customers this process has not seen since it started, and republish pending outboxes.
        if not rescan["needed"] or app.rebalancing or app.in_recovery:
            return
        engine.forget_cached()
        states.cache.clear()
        states.unsent.clear()  # the records are read again below
        intake.stream_time.clear()
        next_offset.clear()
        pending = []
        for state, outbox in states.recovered():
            engine.schedule(state)
            # A partition's progress is the latest stream time of its customers' states; without
            # it a restarted worker would accept events the uninterrupted run rejects as too late.
            intake.recover(
                topics.partition_for(state.customer_id.encode(), settings.partitions), state.stream_time
            )
            if outbox:
                pending.append((state, outbox))
        await republish_outboxes(pending)
        rescan["needed"] = False
        metrics.health.state_recovered()

    next_offset: dict[int, int] = {}  # per input partition: the next offset to fold (durable)
    future_bound_ms = int(settings.future_bound_s * 1000)

    def expected_offset(partition: int) -> int | None:
        if partition not in next_offset:
            stored = table.get(offsets_key(partition, settings.partitions))
            if stored is None:
                return None
            next_offset[partition] = int(stored)
        return next_offset[partition]

    async def fold(record: Incoming) -> None:
        metrics.events_in += 1
        # The shell reads the wall clock; the engine only ever sees event time.
        arrived_ms = int(time.time() * 1000)
        intake.not_after_ms = arrived_ms + future_bound_ms
        metrics.health.event_arrived(record.timestamp_ms, arrived_ms)
        home = placement.home_of(record.value, record.partition)
        if home is not None:  # not on its customer's partition: folded there, by its owner
            await placement.send_home(record.value, *home, (record.topic, record.partition, record.offset))
            return
        # A customer's events all come from one partition: the intake measures lateness against
        # that partition's progress, not against faster partitions.
        source = f"{record.topic}/{record.partition}"
        verdict = intake.offer(record.value, source, record.offset, record.partition)
        if verdict.event is not None:
            source_ts.setdefault(verdict.event.customer_id, []).append(arrived_ms)
        if verdict.kind is Kind.DUPLICATE:
            metrics.duplicates += 1
        elif verdict.rejection is not None:
            await _quarantine(bad_topic, record, verdict.rejection, metrics)

    async def fill_gap(partition: int, start: int, end: int) -> None:
        # Faust can hand a stream a later offset than the next one after a rebalance, and then
        # commit past the ones it skipped (faust-streaming issues on rebalance races). The next
        # offset to fold is durable, so a skip is seen and the records are read back here; if
        # Faust delivers them later after all, they are below the next offset and skipped.
        log.warning("worker.offsets_skipped", partition=partition, first=start, last=end - 1)
        loop = asyncio.get_running_loop()
        records = await loop.run_in_executor(
            None, read_range, settings.kafka_bootstrap, names.touchpoints, partition, start, end
        )
        for record in records:
            await fold(record)
        metrics.gaps_filled += len(records)

    @app.agent(source, concurrency=1)
    async def journeys(stream: Any) -> None:
        async for batch in stream.take_events(JOURNEY_BATCH, within=0.2):
            async with lock:
                await refresh_after_rebalance()
                for event in batch:
                    message = event.message
                    partition, offset = message.partition, message.offset
                    # Fold each input offset exactly once, in order: Faust re-delivers from its
                    # committed offset after a restart (behind what the states hold), and after a
                    # rebalance it can deliver a prefetched later offset first, or skip some.
                    expected = expected_offset(partition)
                    if expected is not None and offset < expected:
                        metrics.redelivered += 1
                        continue
                    if expected is not None and offset > expected:
                        await fill_gap(partition, expected, offset)
                    record = Incoming(
                        message.topic,
                        partition,
                        offset,
                        message.key,
                        event.value,
                        int(message.timestamp * 1000),
                    )
                    await fold(record)
                    next_offset[partition] = max(next_offset.get(partition, 0), offset + 1)
                await placement.settle()  # re-routed records are in Kafka before the batch is acked
                await publish_and_persist()
                for event in batch:  # processed = its derived rows are in Kafka
                    metrics.processed[(event.message.topic, event.message.partition)] = (
                        event.message.offset + 1
                    )

    sink_next: dict[tuple[str, int], int] = {}  # per derived/bad partition: next offset to write
    sink_loaded = {"done": False}

    async def sink_expected(topic: str, partition: int) -> int | None:
        if not sink_loaded["done"]:
            loop = asyncio.get_running_loop()
            stored = await loop.run_in_executor(None, _sink_progress, store, settings.app_id)
            for key, offset in stored.items():  # the other sink agent may be ahead of the table
                sink_next[key] = max(sink_next.get(key, offset), offset)
            sink_loaded["done"] = True
        return sink_next.get((topic, partition))

    async def run_sink(stream: Any) -> None:
        async for batch in stream.take_events(SINK_BATCH, within=0.5):
            delivered: list[Delivered] = []
            for e in batch:
                message = e.message
                topic, partition, offset = message.topic, message.partition, message.offset
                # Same rule as the journey agent: each offset written once and none skipped (the
                # next offset per partition is in sink_progress, written after the rows).
                expected = await sink_expected(topic, partition)
                if expected is not None and offset < expected:
                    metrics.redelivered += 1
                    continue
                if expected is not None and offset > expected:
                    missed = await _read_back(settings.kafka_bootstrap, topic, partition, expected, offset)
                    delivered.extend(missed)
                    metrics.gaps_filled += len(missed)
                delivered.append(Delivered(topic, partition, offset, e.value, _headers(e)))
                sink_next[(topic, partition)] = offset + 1
            if delivered:
                await _write_until_done(sink, delivered, metrics)
                progress = {(d.topic, d.partition): sink_next[(d.topic, d.partition)] for d in delivered}
                await _insert_progress(store, settings.app_id, progress, metrics)
            for e in batch:  # processed = its rows are in ClickHouse (what /health's lag means)
                metrics.processed[(e.message.topic, e.message.partition)] = e.message.offset + 1

    app.agent(derived, name="sink-journey-events", concurrency=1)(run_sink)
    app.agent(bad_topic, name="sink-quarantine", concurrency=1)(run_sink)

    progress_sent: dict[int, tuple[int, float]] = {}  # partition -> (time reported, when)

    async def send_progress() -> None:
        # Every input partition's event time, into the derived partition of the same number (behind
        # its updates), when it moved and every PROGRESS_REPEAT_S (for consumers that restarted). A
        # partition with nothing left to read is idle: it reports the latest time of any partition,
        # so a quiet partition does not hold back consumers' watermarks.
        try:
            assigned = [tp for tp in app.consumer.assignment() if tp.topic == names.touchpoints]
            highwaters = await app.consumer.highwaters(*assigned) if assigned else {}
        except Exception:  # consumer not ready: next tick
            return
        latest = max(intake.stream_time.values(), default=None)
        now = time.monotonic()
        for tp in assigned:
            done = metrics.processed.get((tp.topic, tp.partition), _committed(app, tp))
            idle = done >= int(highwaters.get(tp, 0))
            reported = latest if idle else intake.stream_time.get(tp.partition)
            if reported is None:
                continue
            sent, at = progress_sent.get(tp.partition, (None, 0.0))
            if reported != sent or now - at >= PROGRESS_REPEAT_S:
                await derived.send(value=encode_progress(tp.partition, reported), partition=tp.partition)
                progress_sent[tp.partition] = (reported, now)

    async def tick() -> None:
        if app.rebalancing or app.in_recovery:
            return
        async with lock:
            await refresh_after_rebalance()
            await publish_and_persist()
            await send_progress()

    app.timer(interval=TICK_SECONDS)(tick)
    if settings.stream_alerts:
        install_alerting(app, model, store, names, settings.partitions)

    def on_rebalance(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        rescan["needed"] = True
        sink_loaded["done"] = False  # partitions may have been written by another worker meanwhile

    app.on_partitions_revoked.connect(on_rebalance)
    app.on_partitions_assigned.connect(on_rebalance)
    watch(app, metrics.health, names.touchpoints)  # after every agent is defined

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        lag = await _lag(app, metrics, names)
        moving = bool(app.rebalancing or app.in_recovery)
        body = {
            **metrics.health.body(store_error=metrics.store_error, rebalancing=moving),
            "events_in": metrics.events_in,
            "rerouted": placement.rerouted,
            "bad": metrics.bad,
            "duplicates": metrics.duplicates,
            "gaps_filled": metrics.gaps_filled,
            "redelivered": metrics.redelivered,
            "sink_rows": metrics.sink_rows,
            "lag": lag,
            "assigned": _assigned(app, names.touchpoints),
        }
        return web.json(body, status=Status(body["status"]).http_code)

    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        lag = await _lag(app, metrics, names)
        text = _prometheus(metrics, lag, placement.rerouted)
        return web.text(text, content_type="text/plain; version=0.0.4")

    return app


async def _quarantine(bad_topic: Any, record: Incoming, rejection: Rejection, metrics: WorkerMetrics) -> None:
    metrics.bad += 1
    await bad_topic.send(
        key=record.key,
        value=record.value,
        headers=bad_headers(rejection, record.topic, record.partition, record.offset),
    )


def _sink_progress(store: ClickHouseProjectionStore, consumer: str) -> dict[tuple[str, int], int]:
    _, rows = store.query(
        "SELECT topic, partition, next_offset FROM sink_progress FINAL "
        "WHERE scenario = 'live' AND consumer = {consumer:String}",
        {"consumer": consumer},
    )
    return {(str(topic), int(partition)): int(offset) for topic, partition, offset in rows}


async def _insert_progress(
    store: ClickHouseProjectionStore,
    consumer: str,
    progress: dict[tuple[str, int], int],
    metrics: WorkerMetrics,
) -> None:
    rows = [
        ("live", consumer, topic, partition, offset, offset, 0)
        for (topic, partition), offset in sorted(progress.items())
    ]
    await _until_stored(
        lambda: store.insert_rows(schema.SINK_PROGRESS, rows), metrics, "sink.progress_failed"
    )


async def _read_back(bootstrap: str, topic: str, partition: int, start: int, end: int) -> list[Delivered]:
    """Messages Faust skipped, read back with a plain consumer (see streams/worker/gapfill.py)."""
    log.warning("sink.offsets_skipped", topic=topic, partition=partition, first=start, last=end - 1)
    loop = asyncio.get_running_loop()
    records = await loop.run_in_executor(None, read_range, bootstrap, topic, partition, start, end)
    return [Delivered(r.topic, r.partition, r.offset, r.value, dict(r.headers)) for r in records]


def _headers(event: Any) -> dict[str, bytes]:
    headers = event.headers or {}
    if isinstance(headers, dict):
        return {str(k): bytes(v) for k, v in headers.items()}
    return {str(k): bytes(v) for k, v in headers}


async def _until_stored(call: Callable[[], T], metrics: WorkerMetrics, event: str) -> T:
    """Run a ClickHouse write in a thread until it succeeds, backing off; /health shows the error
    meanwhile (offsets are only committed once the rows are in ClickHouse)."""
    delay = 0.5
    loop = asyncio.get_running_loop()
    while True:
        try:
            result = await loop.run_in_executor(None, call)
            metrics.store_error = None
            return result
        except StoreError as error:
            metrics.sink_errors += 1
            metrics.store_error = str(error)
            log.warning(event, error=str(error), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def _write_until_done(sink: ProjectionSink, delivered: list[Delivered], metrics: WorkerMetrics) -> None:
    """Insert the messages' rows, retrying until ClickHouse has them; records latency figures."""
    started = time.perf_counter()
    written, source_ts = await _until_stored(lambda: sink.write(delivered), metrics, "sink.insert_failed")
    visible_ms = time.time() * 1000
    metrics.sink_rows += written
    metrics.health.rows_written(source_ts, visible_ms)
    metrics.insert_seconds.append(time.perf_counter() - started)
    del metrics.insert_seconds[:-1000]


def worker_status(metrics: WorkerMetrics, *, rebalancing: bool) -> str:
    """/health's status: degraded while ClickHouse refuses inserts (nothing moves then)."""
    if metrics.store_error is not None:
        return "degraded"
    return "rebalancing" if rebalancing else "ok"


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


def _prometheus(metrics: WorkerMetrics, lag: int, rerouted: int) -> str:
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
        "# TYPE touchpath_input_gap_records_total counter",
        f"touchpath_input_gap_records_total {metrics.gaps_filled}",
        "# TYPE touchpath_sink_rows_total counter",
        f"touchpath_sink_rows_total {metrics.sink_rows}",
        "# TYPE touchpath_sink_errors_total counter",
        f"touchpath_sink_errors_total {metrics.sink_errors}",
        "# TYPE touchpath_consumer_lag gauge",
        f"touchpath_consumer_lag {lag}",
        "# TYPE touchpath_event_to_row_latency_ms summary",
        f'touchpath_event_to_row_latency_ms{{quantile="0.5"}} {metrics.health.latency_ms(0.5) or 0}',
        f'touchpath_event_to_row_latency_ms{{quantile="0.99"}} {metrics.health.latency_ms(0.99) or 0}',
        "# TYPE touchpath_rerouted_records_total counter",
        f"touchpath_rerouted_records_total {rerouted}",
        "# TYPE touchpath_agent_crashes_total counter",
        f"touchpath_agent_crashes_total {metrics.health.crash_count}",
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
    worker = faust.Worker(
        app,
        loglevel=settings.log_level.upper(),
        logging_config=stdlib_logging_config(settings.log_level),  # Faust's own logs as JSON lines
        quiet=True,
        redirect_stdouts=False,
    )
    worker.spinner = None  # its terminal escapes would interleave with the JSON lines
    try:
        worker.execute_from_commandline()
    finally:
        store.close()
