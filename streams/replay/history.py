"""Replay recorded history through the journey engine into a named scenario (never `live`)."""

from __future__ import annotations

import gc
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import groupby
from operator import itemgetter
from typing import Any, Protocol

import orjson
import pyarrow as pa

from events.errors import TouchpathError
from events.model import TouchpointEvent
from projections import schema
from projections.engine import RowBatch
from projections.intake import Intake, quarantine_row
from projections.journeys import JourneyModel, parse_definitions
from projections.native_engine import NativeEngine
from projections.occurrence import Occurrence
from projections.rows import Row
from streams.common.engines import DEFAULT_ENGINE, EngineKind, journey_engine
from streams.common.progress import Progress
from streams.common.topics import TOUCHPOINTS
from streams.store import arrow_rows
from streams.store.clickhouse import ClickHouseProjectionStore, StoreError
from streams.store.scenarios import (
    RunRecord,
    check_writable,
    clear_scenario,
    record_run,
    wait_for_mutations,
    write_settings,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PAGE_EVENTS = 100_000  # events read per query (whole customers): bounds the reader's memory
CHUNK_EVENTS = 20_000  # events per unit of work handed to a worker
FLUSH_ROWS = 100_000  # rows buffered per table before an insert (inserts overlap the workers)
PARALLEL_FROM = 50_000  # smaller histories replay in-process (starting workers costs more)
MAX_WORKERS = 8  # beyond this the reading and inserting process is the bottleneck
KAFKA_IDLE_S = 30.0
TABLES_BY_NAME = {table.name: table for table in schema.TABLES}

# Columns of touchpoint_events the engine needs, in Occurrence order after the customer id.
HISTORY_SQL = """SELECT customer_id, toUnixTimestamp64Milli(occurred_at) AS ts, event_id, touchpoint, channel,
       outcome, persona, employee_id, survey_kind, survey_score
FROM touchpoint_events FINAL
WHERE scenario = 'live' AND customer_id > {after:String}
  AND ({last_page:Bool} OR customer_id <= {upto:String})
  AND occurred_at >= {start:DateTime64(3, 'UTC')} AND occurred_at <= {end:DateTime64(3, 'UTC')}
ORDER BY customer_id, occurred_at, event_id"""
# The customer at which the next page ends (a page holds whole customers).
PAGE_END_SQL = """SELECT customer_id FROM touchpoint_events
WHERE scenario = 'live' AND customer_id > {after:String}
  AND occurred_at >= {start:DateTime64(3, 'UTC')} AND occurred_at <= {end:DateTime64(3, 'UTC')}
ORDER BY customer_id LIMIT 1 OFFSET {offset:UInt64}"""
EXTENT_SQL = """SELECT count(), toUnixTimestamp64Milli(max(occurred_at)) FROM touchpoint_events
WHERE scenario = 'live' AND occurred_at >= {start:DateTime64(3, 'UTC')}
  AND occurred_at < {end:DateTime64(3, 'UTC')}"""
# The scenario's copy of the recorded events, made by the server: exactly the rows the engine's
# accept() writes for events this model's registry accepts (owner team from the new registry).
COPY_EVENTS_SQL = """INSERT INTO touchpoint_events ({columns})
SELECT {scenario:String}, event_id, customer_id, occurred_at, channel, touchpoint,
       transform(touchpoint, {touchpoints:Array(String)}, {owners:Array(String)}, ''),
       persona, outcome, employee_id, survey_kind, survey_score, survey_comment, attributes, source
FROM touchpoint_events FINAL
WHERE scenario = 'live' AND occurred_at >= {start:DateTime64(3, 'UTC')}
  AND occurred_at <= {end:DateTime64(3, 'UTC')}
  AND transform(touchpoint, {touchpoints:Array(String)}, {channels:Array(String)}, '') = channel
  AND (persona IS NULL OR has({personas:Array(String)}, persona))"""


class ReplayError(TouchpathError):
    """A replay cannot start or read its source; the message says where and what to do."""


# ---- time window -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Event times to replay: [start, end) in epoch milliseconds; None leaves that side open."""

    start_ms: int | None = None
    end_ms: int | None = None

    def bounds(self) -> tuple[int, int]:
        """Both ends, the open ones as the widest times ClickHouse stores."""
        start = self.start_ms if self.start_ms is not None else 0
        return start, self.end_ms if self.end_ms is not None else 4_102_444_800_000  # 2100-01-01

    def datetimes(self) -> tuple[datetime | None, datetime | None]:
        """The ends as aware UTC datetimes (None when open)."""
        start, end = self.start_ms, self.end_ms
        return (
            None if start is None else EPOCH + timedelta(milliseconds=start),
            None if end is None else EPOCH + timedelta(milliseconds=end),
        )


def parse_time(text: str, option: str) -> int:
    """Epoch milliseconds of an RFC 3339 time with offset, or of a date (midnight UTC)."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return (datetime(day.year, day.month, day.day, tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        msg = f"{option} '{text}' is not a time: write e.g. 2026-01-05 or 2026-01-05T09:30:00Z"
        raise ReplayError(msg) from error
    if moment.tzinfo is None:
        msg = f"{option} '{text}' has no UTC offset: add Z or +01:00, or give a date"
        raise ReplayError(msg)
    return (moment - EPOCH) // timedelta(milliseconds=1)


def window_of(start: str | None, end: str | None) -> TimeWindow:
    """The window given by --from/--to; an empty window is refused."""
    window = TimeWindow(
        parse_time(start, "--from") if start else None, parse_time(end, "--to") if end else None
    )
    if window.start_ms is not None and window.end_ms is not None and window.end_ms <= window.start_ms:
        msg = f"--to ({end}) must be later than --from ({start})"
        raise ReplayError(msg)
    return window


# ---- alerts hook ---------------------------------------------------------------------------------


class WouldBeAlerts(Protocol):
    """What a replay tells alerting (projections/alerts/, streams/alerting/) once it has written rows.

    Called once after a replay wrote its rows: record in the alerts table, under the replay's
    scenario, the alerts this history would have raised (from the scenario's friction_signals in
    event-time order — replay writes customer by customer, not in time order). It must deliver
    nothing: a replay hands it the store and the model only, never a webhook client or producer.
    """

    def record(self, store: ClickHouseProjectionStore, model: JourneyModel, scenario: str) -> int:
        """Write the scenario's would-be alerts; return how many."""
        ...


class NoAlerts:
    """Records no alerts (library callers that pass no recorder; the CLI passes the real one)."""

    def record(self, store: ClickHouseProjectionStore, model: JourneyModel, scenario: str) -> int:
        """Nothing to record."""
        return 0


# ---- the work of one chunk (runs in worker processes) ---------------------------------------------

Columns = list[list[Any]]  # HISTORY_SQL's columns for whole customers


@dataclass(slots=True)
class ChunkResult:
    """Rows of one chunk of customers: Arrow IPC per table (or plain rows when a table has no Arrow
    form), and counts."""

    encoded: dict[str, bytes] = field(default_factory=dict)
    rows: dict[str, list[Row]] = field(default_factory=dict)
    events: int = 0
    customers: int = 0
    quarantined: int = 0
    cpu_s: float = 0.0  # CPU time the chunk took where it ran


def encode_into(result: ChunkResult, batch: RowBatch) -> None:
    """Put a batch's rows into a result, as Arrow IPC where the table has an Arrow form."""
    for table in schema.TABLES:
        rows = batch.rows[table.name]
        if rows:
            blob = arrow_rows.encode_rows(table, rows)
            if blob is None:
                result.rows[table.name] = rows
            else:
                result.encoded[table.name] = blob


def definitions_json(model: JourneyModel) -> str:
    """The model's journey file as self-contained JSON (registry inlined): it rebuilds the same model."""
    document = model.document.model_copy(update={"registry": model.registry, "registry_file": None})
    return document.model_dump_json()


class ChunkReplayer:
    """Replays chunks of whole customers through one engine whose watermark is the history's end."""

    def __init__(
        self, model: JourneyModel, scenario: str, watermark: int, engine: EngineKind = DEFAULT_ENGINE
    ) -> None:
        self.model = model
        self.scenario = scenario
        self.engine = journey_engine(model, scenario, engine)
        self.engine.advance(watermark)

    def replay(self, columns: Columns) -> ChunkResult:
        """Rows of every customer in the chunk (events ordered by customer, time, event id)."""
        started = time.process_time()
        channel_of = self.model.channel_of
        personas = self.model.by_persona
        make = Occurrence._make
        batch = RowBatch()
        result = ChunkResult(events=len(columns[0]))
        engine = self.engine
        native: list[tuple[str, list[Occurrence]]] = []
        # Rows are (customer, Occurrence fields...); groupby hands over one customer at a time.
        for customer, rows in groupby(zip(*columns, strict=True), key=itemgetter(0)):
            occurrences = []
            for position, row in enumerate(rows, start=1):
                # row[6] is the persona: one the model does not define is `unknown_persona`, as live.
                if channel_of.get(row[3]) == row[4] and (row[6] is None or row[6] in personas):
                    occurrences.append(make(row[1:]))
                else:
                    batch.add(schema.BAD_EVENTS, self._quarantine(row, position))
                    result.quarantined += 1
            if not occurrences:
                pass
            elif isinstance(engine, NativeEngine):
                native.append((customer, occurrences))
            else:
                engine.replay_customer(customer, occurrences, batch)
            result.customers += 1
        encode_into(result, batch)
        if isinstance(engine, NativeEngine) and native:
            # The native core renders the whole chunk into Arrow buffers: no Python object per row.
            for name, (count, buffers) in engine.replay_columns(native).items():
                record_batch = arrow_rows.native_record_batch(TABLES_BY_NAME[name], count, buffers)
                assert name not in result.encoded  # the engine renders no bad_events
                result.encoded[name] = arrow_rows.encode_batch(record_batch)
        result.cpu_s = time.process_time() - started
        return result

    def _quarantine(self, row: tuple[Any, ...], position: int) -> Row:
        """The bad_events row of a recorded event this model's registry refuses."""
        customer, stamp, event_id, touchpoint, channel, _, persona = row[:7]
        rejection = self.model.check(
            TouchpointEvent.model_construct(
                event_id=event_id,
                customer_id=customer,
                occurred_at=_ms_param(stamp),
                channel=channel,
                touchpoint=touchpoint,
                persona=persona,
            )
        )
        assert rejection is not None  # the caller found the pair or the persona unknown to the model
        recorded = {"event_id": event_id, "customer_id": customer, "occurred_ms": stamp,
                    "channel": channel, "touchpoint": touchpoint}  # fmt: skip
        raw = orjson.dumps(recorded if persona is None else {**recorded, "persona": persona})
        return quarantine_row(
            self.scenario, f"touchpoint_events/{customer}", position, rejection, raw.decode()
        )


_WORKER: dict[str, ChunkReplayer] = {}  # the replayer of this worker process


def _start_worker(definitions: str, scenario: str, watermark: int, engine: EngineKind) -> None:
    _WORKER["replayer"] = ChunkReplayer(
        parse_definitions(definitions, "<replay>"), scenario, watermark, engine
    )
    # Customer states die with each customer and hold no cycles: collecting young objects less often
    # saves several percent of a worker's time.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _replay_in_worker(columns: Columns) -> ChunkResult:
    return _WORKER["replayer"].replay(columns)


class _InProcess(Executor):
    """Runs chunks at once in this process (small histories, or --workers 0)."""

    def __init__(self, replayer: ChunkReplayer) -> None:
        self.replayer = replayer

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """The chunk's result, computed now (fn is the workers' entry point; here the replayer runs)."""
        future: Future[Any] = Future()
        future.set_result(self.replayer.replay(*args))
        return future


# ---- writing ---------------------------------------------------------------------------------------


class RowWriter:
    """Buffers rows per table and inserts them in large blocks; ClickHouse parses the Arrow data."""

    def __init__(self, store: ClickHouseProjectionStore, flush_rows: int = FLUSH_ROWS) -> None:
        self.store = store
        self.flush_rows = flush_rows
        self.written = 0
        self._tables = {table.name: table for table in schema.TABLES}
        self._arrow: dict[str, list[pa.Table]] = {}
        self._plain: dict[str, list[Row]] = {}

    def add(self, result: ChunkResult) -> None:
        """Take one chunk's rows; inserts the tables whose buffers are full."""
        for name, blob in result.encoded.items():
            self._arrow.setdefault(name, []).append(arrow_rows.decode(blob))
        for name, rows in result.rows.items():
            self._plain.setdefault(name, []).extend(rows)
        self._flush(force=False)

    def add_batch(self, batch: RowBatch) -> None:
        """Take an engine batch (the Kafka path renders in this process)."""
        result = ChunkResult()
        encode_into(result, batch)
        self.add(result)

    def close(self) -> None:
        """Insert everything still buffered."""
        self._flush(force=True)

    def _flush(self, *, force: bool) -> None:
        for name, parts in list(self._arrow.items()):
            buffered = sum(part.num_rows for part in parts)
            if parts and (force or buffered >= self.flush_rows):
                data = pa.concat_tables(parts)
                arrow_rows.insert_arrow(self.store, self._tables[name], data, write_settings(name))
                self.written += data.num_rows
                self._arrow[name] = []
        for name, rows in list(self._plain.items()):
            if rows and (force or len(rows) >= self.flush_rows):
                token = write_settings(name)["insert_deduplication_token"]
                self.store.insert_rows(self._tables[name], rows, token=str(token))
                self.written += len(rows)
                self._plain[name] = []


# ---- replay from ClickHouse ------------------------------------------------------------------------


@dataclass(slots=True)
class ReplayStats:
    """What a replay read and wrote."""

    scenario: str
    source: str
    events: int = 0
    customers: int = 0
    quarantined: int = 0
    rows_written: int = 0
    alerts: int = 0
    seconds: float = 0.0
    workers: int = 0
    engine_cpu_s: float = 0.0  # summed over the processes that ran the engine
    store_cpu_s: float = 0.0  # this process: reading, Arrow, and chDB's own threads when embedded

    @property
    def events_per_s(self) -> float:
        """Replay speed over the whole run (reading, engine, writing)."""
        return self.events / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "scenario": self.scenario,
            "source": self.source,
            "events": self.events,
            "customers": self.customers,
            "quarantined": self.quarantined,
            "rows_written": self.rows_written,
            "would_be_alerts": self.alerts,
            "seconds": round(self.seconds, 2),
            "events_per_s": round(self.events_per_s),
            "workers": self.workers,
            "engine_cpu_s": round(self.engine_cpu_s, 2),
            "store_cpu_s": round(self.store_cpu_s, 2),
        }


def _ms_param(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def history_extent(store: ClickHouseProjectionStore, window: TimeWindow) -> tuple[int, int | None]:
    """How many live events lie in the window (before deduplication) and the last event time."""
    start, end = window.bounds()
    _, rows = store.query(EXTENT_SQL, {"start": _ms_param(start), "end": _ms_param(end)})
    count, last = rows[0]
    return int(count), (int(last) if count else None)


def history_pages(
    store: ClickHouseProjectionStore, start_ms: int, last_ms: int, page_events: int = PAGE_EVENTS
) -> Iterator[Columns]:
    """The live events in [start, last] as column pages of whole customers, in customer order.

    Keyset pages on the table's sort key: no query stays open between pages (the same client
    inserts meanwhile) and memory holds one page.
    """
    after = ""
    times = {"start": _ms_param(start_ms), "end": _ms_param(last_ms)}
    while True:
        _, rows = store.query(PAGE_END_SQL, {"after": after, "offset": page_events, **times})
        upto = str(rows[0][0]) if rows else ""
        parameters = {"after": after, "upto": upto, "last_page": not rows, **times}
        try:
            columns = store.query_columns(HISTORY_SQL, parameters)
        except StoreError as error:
            msg = f"reading touchpoint_events (customers after '{after}') failed: {error.__cause__ or error}"
            raise StoreError(msg) from error
        if columns and columns[0]:
            yield columns
        if not rows:
            return
        after = upto


def split_customers(columns: Columns, chunk_events: int = CHUNK_EVENTS) -> Iterator[Columns]:
    """Chunks of about chunk_events events that never split one customer's events."""
    customers = columns[0]
    count = len(customers)
    start = 0
    while start < count:
        end = min(start + chunk_events, count)
        while end < count and customers[end] == customers[end - 1]:
            end += 1
        yield [column[start:end] for column in columns]
        start = end


def copy_recorded_events(
    store: ClickHouseProjectionStore, model: JourneyModel, scenario: str, start_ms: int, last_ms: int
) -> None:
    """Write the scenario's touchpoint_events: the live rows its registry accepts, copied by the server."""
    touchpoints = sorted(model.channel_of)
    columns = ", ".join(schema.TOUCHPOINT_EVENTS.column_names)
    parameters = {
        "scenario": scenario,
        "touchpoints": touchpoints,
        "owners": [model.owner_of[tp] for tp in touchpoints],
        "channels": [model.channel_of[tp] for tp in touchpoints],
        "personas": sorted(model.by_persona),
        "start": _ms_param(start_ms),
        "end": _ms_param(last_ms),
    }
    store.command(
        COPY_EVENTS_SQL.replace("{columns}", columns),
        parameters,
        write_settings(f"copy:{scenario}"),
        what=f"copying touchpoint_events into scenario '{scenario}'",
    )


def default_workers(events: int) -> int:
    """Worker processes for a history of this size: one per core, none for small histories."""
    return 0 if events < PARALLEL_FROM else max(1, min(MAX_WORKERS, os.cpu_count() or 1))


def _executor(
    workers: int, model: JourneyModel, scenario: str, watermark: int, engine: EngineKind
) -> Executor:
    if workers <= 0:
        return _InProcess(ChunkReplayer(model, scenario, watermark, engine))
    # forkserver: workers fork from a clean server process, never from this one (which runs
    # chDB threads that a fork would copy mid-flight).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["streams.replay.history"])
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_start_worker,
        initargs=(definitions_json(model), scenario, watermark, engine),
    )


def replay_from_clickhouse(
    store: ClickHouseProjectionStore,
    model: JourneyModel,
    scenario: str,
    window: TimeWindow | None = None,
    *,
    workers: int | None = None,
    alerts: WouldBeAlerts | None = None,
    progress: Progress | None = None,
    journeys_file: str = "",
    page_events: int = PAGE_EVENTS,
    engine_kind: EngineKind = DEFAULT_ENGINE,
) -> ReplayStats:
    """Replay the live events in the window into `scenario`, replacing what it held.

    Each customer's events go through the engine in (time, event id) order with the watermark at
    the history's last event time, so instances close exactly as they did live.
    """
    check_writable(scenario)
    window = window or TimeWindow()
    started, cpu_started = time.perf_counter(), time.process_time()
    total, last = history_extent(store, window)
    stats = ReplayStats(scenario, "clickhouse")
    cleared = clear_scenario(store, scenario, wait=False)  # finishes while the replay runs
    _record(store, model, window, stats, journeys_file=journeys_file, complete=False)
    if last is None:
        stats.seconds = time.perf_counter() - started
        _finish(store, model, window, stats, cleared, alerts=alerts, journeys_file=journeys_file)
        return stats
    start_ms = window.bounds()[0]
    stats.workers = default_workers(total) if workers is None else workers
    progress = progress or Progress(f"replay into {scenario}", total=total)
    progress.total = total
    writer = RowWriter(store)
    pending: deque[Future[ChunkResult]] = deque()

    def take(result: ChunkResult) -> None:
        writer.add(result)
        stats.events += result.events
        stats.customers += result.customers
        stats.quarantined += result.quarantined
        stats.engine_cpu_s += result.cpu_s
        progress.update(stats.events)

    executor = _executor(stats.workers, model, scenario, last, engine_kind)
    in_flight = 3 * max(1, stats.workers)  # enough queued work to keep workers busy through an insert
    copied = False
    try:
        for page in history_pages(store, start_ms, last, page_events):
            for chunk in split_customers(page):
                pending.append(executor.submit(_replay_in_worker, chunk))
                while len(pending) > in_flight or (pending and pending[0].done()):
                    take(pending.popleft().result())
            if not copied:  # while the workers start on the first page
                copy_recorded_events(store, model, scenario, start_ms, last)
                copied = True
        while pending:
            take(pending.popleft().result())
        if not copied:
            copy_recorded_events(store, model, scenario, start_ms, last)
    finally:
        executor.shutdown(cancel_futures=True)
    writer.close()
    progress.done()
    stats.rows_written = writer.written + stats.events - stats.quarantined
    wait_for_mutations(store, cleared)
    stats.seconds = time.perf_counter() - started
    stats.store_cpu_s = time.process_time() - cpu_started
    if stats.workers <= 0:  # the engine ran here too
        stats.store_cpu_s -= stats.engine_cpu_s
    _finish(store, model, window, stats, cleared, alerts=alerts, journeys_file=journeys_file)
    return stats


def _finish(
    store: ClickHouseProjectionStore,
    model: JourneyModel,
    window: TimeWindow,
    stats: ReplayStats,
    cleared: list[str],
    *,
    alerts: WouldBeAlerts | None,
    journeys_file: str,
) -> None:
    """Wait until the scenario's old rows are gone, record would-be alerts, then the run record."""
    scenario = stats.scenario
    wait_for_mutations(store, cleared)
    stats.alerts = (alerts or NoAlerts()).record(store, model, scenario)
    _record(store, model, window, stats, journeys_file=journeys_file, complete=True)


def _record(
    store: ClickHouseProjectionStore,
    model: JourneyModel,
    window: TimeWindow,
    stats: ReplayStats,
    *,
    journeys_file: str,
    complete: bool,
) -> None:
    window_from, window_to = window.datetimes()
    record_run(
        store,
        RunRecord(
            scenario=stats.scenario,
            replayed_at=datetime.now(UTC),
            source=stats.source,
            journeys_file=journeys_file,
            journeys=tuple(journey.key for journey in model.journeys),
            window_from=window_from,
            window_to=window_to,
            events=stats.events,
            quarantined=stats.quarantined,
            seconds=stats.seconds,
            definitions=definitions_json(model),
            complete=complete,
        ),
    )


# ---- replay from Kafka -----------------------------------------------------------------------------


def replay_from_kafka(
    store: ClickHouseProjectionStore,
    model: JourneyModel,
    scenario: str,
    bootstrap: str,
    window: TimeWindow | None = None,
    *,
    topic: str = TOUCHPOINTS,
    alerts: WouldBeAlerts | None = None,
    progress: Progress | None = None,
    journeys_file: str = "",
    drain_every: int = 25_000,
    engine_kind: EngineKind = DEFAULT_ENGINE,
) -> ReplayStats:
    """Replay a time range of the touchpoints topic into `scenario`, replacing what it held.

    Partitions are assigned directly (no consumer group, nothing committed); each starts at the
    first record at or after --from (offsets_for_times) and stops at its end offset captured at
    start, so records produced meanwhile are left out. Records whose Kafka timestamp is at or after
    --to are skipped. Records feed the engine in partition order, as the live workers read them.
    """
    from kafka import KafkaConsumer, TopicPartition  # noqa: PLC0415 -- only Kafka replays need it

    check_writable(scenario)
    window = window or TimeWindow()
    started = time.perf_counter()
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            client_id="touchpath-replay",
            max_poll_records=5_000,
        )
    except Exception as error:
        msg = f"cannot reach Kafka at {bootstrap}: {error}. Is the broker running, is the address right?"
        raise ReplayError(msg) from error
    try:
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            msg = f"topic '{topic}' does not exist on {bootstrap}; name it with --topic"
            raise ReplayError(msg)
        partitions = [TopicPartition(topic, number) for number in sorted(numbers)]
        consumer.assign(partitions)
        stop: dict[Any, int] = consumer.end_offsets(partitions)
        begin: dict[Any, int] = consumer.beginning_offsets(partitions)
        if window.start_ms is not None:
            found = consumer.offsets_for_times(dict.fromkeys(partitions, window.start_ms))
            begin = {tp: (found[tp].offset if found.get(tp) else stop[tp]) for tp in partitions}
        for tp in partitions:
            consumer.seek(tp, begin[tp])
        total = sum(max(0, stop[tp] - begin[tp]) for tp in partitions)
        cleared = clear_scenario(store, scenario, wait=False)  # finishes while the replay runs
        stats = ReplayStats(scenario, f"kafka {topic}")
        _record(store, model, window, stats, journeys_file=journeys_file, complete=False)
        progress = progress or Progress(f"replay of {topic} into {scenario}", total=total)
        progress.total = total
        engine = journey_engine(model, scenario, engine_kind)
        # History: no future bound; stream time per partition, as the live workers measure lateness.
        intake = Intake(engine, raw_as_text=True)
        writer = RowWriter(store)
        quarantine: list[Row] = []
        read = since_drain = 0
        idle_since = time.monotonic()
        remaining = {tp for tp in partitions if begin[tp] < stop[tp]}
        while remaining:
            polled = consumer.poll(timeout_ms=500)
            if not polled:
                if time.monotonic() - idle_since > KAFKA_IDLE_S:
                    where = ", ".join(f"{tp.partition}@{consumer.position(tp)}" for tp in sorted(remaining))
                    msg = (
                        f"Kafka sent nothing for {KAFKA_IDLE_S:.0f}s while reading {topic} "
                        f"(partition@offset {where}); is the broker still up?"
                    )
                    raise ReplayError(msg)
                continue
            idle_since = time.monotonic()
            for tp, records in polled.items():
                source = f"{topic}/{tp.partition}"
                for record in records:
                    if record.offset >= stop[tp]:
                        break
                    read += 1
                    if window.end_ms is not None and record.timestamp >= window.end_ms:
                        continue
                    if window.start_ms is not None and record.timestamp < window.start_ms:
                        continue
                    stats.events += 1
                    since_drain += 1
                    verdict = intake.offer(record.value or b"", source, record.offset, tp.partition)
                    if verdict.quarantine is not None:
                        stats.quarantined += 1
                        quarantine.append(verdict.quarantine)
                if consumer.position(tp) >= stop[tp] or (records and records[-1].offset + 1 >= stop[tp]):
                    remaining.discard(tp)
                    consumer.pause(tp)
            if since_drain >= drain_every:
                since_drain = 0
                writer.add_batch(_with_quarantine(engine.drain(), quarantine))
                quarantine = []
            progress.update(read)
        writer.add_batch(_with_quarantine(engine.drain(), quarantine))
        writer.close()
        progress.update(read)
        progress.done()
        stats.customers = (
            engine.customer_count() if isinstance(engine, NativeEngine) else len(engine.customers)
        )
        stats.rows_written = writer.written
        wait_for_mutations(store, cleared)
        stats.seconds = time.perf_counter() - started
        _finish(store, model, window, stats, cleared, alerts=alerts, journeys_file=journeys_file)
        return stats
    finally:
        consumer.close()


def _with_quarantine(batch: RowBatch, quarantine: list[Row]) -> RowBatch:
    for row in quarantine:
        batch.add(schema.BAD_EVENTS, row)
    return batch
