"""The worker's composition root: roles, the Faust app (built by a factory), the loader, /health."""

from __future__ import annotations

import asyncio
import logging.config
import signal
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import faust
import structlog
from kafka import KafkaProducer

from events.errors import Rejection, TouchpathError
from projections.journeys import JourneyModel
from streams.common import topics
from streams.common.logs import stdlib_logging_config
from streams.common.settings import Settings
from streams.worker.control import headers_of
from streams.worker.gapfill import Incoming, read_range
from streams.worker.health import Status, WorkerHealth, watch
from streams.worker.journeys import JourneyAgent, JourneyCounters
from streams.worker.loader import Loader, LoaderCounters, LoaderView
from streams.worker.loader_process import LoaderProcess, build_loader, open_store
from streams.worker.partitioning import Placement
from streams.worker.quarantine import bad_headers
from streams.worker.records import Recovered
from streams.worker.states import latest_event_time, recover_partition

log = structlog.get_logger("touchpath.worker")

JOURNEY_BATCH = 5_000  # input records per batch (one journey-events record per partition and batch)
BATCH_WITHIN_S = 0.2
TICK_SECONDS = 1.0
STALE_S = 15.0  # end offsets older than this: /health reports no lag figure
ELSEWHERE_EVERY_S = 3.0  # how often a worker without every partition reads the others' event time


class Role(StrEnum):
    """What a `touchpath worker` process does."""

    ALL = "all"  # journeys and the loader in one process (one process, or the one owning chDB)
    JOURNEYS = "journeys"  # fold input partitions (as many processes as partitions)
    LOADER = "loader"  # journey-events into the store, and alerting (one per embedded data dir)


@dataclass(slots=True)
class WorkerMetrics:
    """What /health and /metrics report: the journey agent's and the loader's counters, and the
    process's health (status, crashes, latency)."""

    journeys: JourneyCounters | None = None
    loader: LoaderCounters | None = None
    loader_failed: str | None = None
    health: WorkerHealth = field(default_factory=WorkerHealth)

    @property
    def store_error(self) -> str | None:
        """The last ClickHouse refusal while it lasts (the loader retries; nothing moves meanwhile)."""
        return self.loader.store_error if self.loader is not None else None

    @property
    def sink_errors(self) -> int:
        """Store refusals so far."""
        return self.loader.store_errors if self.loader is not None else 0


def create_app(
    settings: Settings,
    model: JourneyModel,
    web_port: int,
    loader: LoaderView | None,
    health: WorkerHealth | None = None,
) -> Any:
    """The Faust app of a journeys (or all-in-one) worker; topics must exist (topics.ensure_topics)."""
    health = WorkerHealth() if health is None else health
    names = topics.TopicNames.with_prefix(settings.topic_prefix)
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # a journeys-only worker opens no store there
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
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
    loop_executor = None  # the default thread pool: Kafka reads for recovery and gap-fill

    async def publish(partition: int, value: bytes) -> Any:
        return await app.producer.send(names.journey_events, None, value, partition, None, None)

    async def quarantine(record: Incoming, rejection: Rejection) -> None:
        # For other subscribers: the original bytes with the typed reason (rows go with the batch).
        headers = bad_headers(rejection, record.topic, record.partition, record.offset)
        await app.producer.send(names.bad, record.key, record.value, None, None, headers)

    async def recover(partition: int) -> Recovered:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            loop_executor, recover_partition, settings.kafka_bootstrap, names.journey_events, partition
        )

    async def read_back(partition: int, start: int, end: int) -> list[Incoming]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            loop_executor, read_range, settings.kafka_bootstrap, names.touchpoints, partition, start, end
        )

    agent = JourneyAgent(
        model,
        publish=publish,
        quarantine=quarantine,
        recover=recover,
        read_back=read_back,
        future_bound_ms=int(settings.future_bound_s * 1000),
        placement=Placement(source, settings.partitions),  # misplaced keys go home, unfolded here
        arrived=health.event_arrived,
        engine=settings.engine,  # TOUCHPATH_ENGINE, as `run`
    )
    metrics = WorkerMetrics(agent.counters, loader.counters if loader is not None else None, health=health)
    del bad_topic  # declared so Faust knows the topic; records go through the producer

    def assigned() -> set[int]:
        try:
            return {tp.partition for tp in app.consumer.assignment() if tp.topic == names.touchpoints}
        except Exception:
            return set()

    @app.agent(source, concurrency=1)
    async def journeys(stream: Any) -> None:
        async for batch in stream.take_events(JOURNEY_BATCH, within=BATCH_WITHIN_S):
            records = [
                Incoming(e.message.topic, e.message.partition, e.message.offset, e.message.key, e.value,
                         int(e.message.timestamp * 1000), headers_of(e.message.headers))
                for e in batch
            ]  # fmt: skip
            await agent.process(records, assigned())

    looked = {"at": 0.0}  # when the other partitions' event time was read last
    # The input's end offsets as the last tick read them: /health answers from these, since asking
    # the consumer thread can take seconds (and a health check must not).
    seen: dict[str, Any] = {"highwaters": None, "at": 0.0}

    async def tick() -> None:
        _note_loader(metrics, loader)  # a loader crash shows on /health without waiting for a request
        if app.rebalancing or app.in_recovery:
            return
        owned = assigned()
        try:
            tps = [tp for tp in app.consumer.assignment() if tp.topic == names.touchpoints]
            highwaters = await app.consumer.highwaters(*tps) if tps else {}
        except Exception:
            return
        seen["highwaters"], seen["at"] = dict(highwaters), time.monotonic()
        elsewhere = None
        now = time.monotonic()
        if owned != set(range(settings.partitions)) and now - looked["at"] >= ELSEWHERE_EVERY_S:
            looked["at"] = now
            loop = asyncio.get_running_loop()
            elsewhere = await loop.run_in_executor(
                None, latest_event_time, settings.kafka_bootstrap, names.journey_events, settings.partitions
            )
        await agent.tick(owned, {tp.partition: int(high) for tp, high in highwaters.items()}, elsewhere)
        # Ready once every assigned partition's state is loaded (and the loader knows where it
        # resumes); a rebalance since (Faust's signal, see watch) makes it wait for the next tick.
        if assigned() <= agent.owned and (loader is None or loader.counters.lag >= 0):
            health.state_recovered()

    app.timer(interval=TICK_SECONDS)(tick)
    watch(app, health, names.touchpoints)  # after every agent is defined

    @app.page("/health")
    async def health_page(web: Any, request: Any) -> Any:
        _note_loader(metrics, loader)
        lag = _lag(app, metrics, seen)
        moving = bool(app.rebalancing or app.in_recovery)
        body = health_body(metrics, lag, _assigned(app, names.touchpoints), moving)
        return web.json(body, status=Status(body["status"]).http_code)

    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        _note_loader(metrics, loader)
        lag = _lag(app, metrics, seen)
        return web.text(_prometheus(metrics, lag), content_type="text/plain; version=0.0.4")

    return app


def health_body(metrics: WorkerMetrics, lag: int, assigned: int, rebalancing: bool) -> dict[str, Any]:
    """/health's answer (its status decides the HTTP code: Status.http_code)."""
    journeys, loader = metrics.journeys or JourneyCounters(), metrics.loader
    return {
        **metrics.health.body(store_error=metrics.store_error, rebalancing=rebalancing),
        "loader_failed": metrics.loader_failed,
        "events_in": journeys.events_in,
        "rerouted": journeys.rerouted,
        "bad": journeys.bad,
        "duplicates": journeys.duplicates,
        "gaps_filled": journeys.gaps_filled,
        "redelivered": journeys.redelivered,
        "records_out": journeys.records_out,
        "event_time": journeys.event_time,
        "sink_rows": loader.rows if loader is not None else 0,
        "batches_loaded": loader.batches if loader is not None else 0,
        "batches_ignored": loader.ignored if loader is not None else 0,
        "lag": lag,
        "assigned": assigned,
    }


def worker_status(metrics: WorkerMetrics, *, rebalancing: bool) -> str:
    """/health's status: starting until ready, degraded while ClickHouse refuses inserts (nothing
    moves then) and once an agent or the loader crashed."""
    return metrics.health.status(store_error=metrics.store_error, rebalancing=rebalancing).value


def _note_loader(metrics: WorkerMetrics, loader: LoaderView | None) -> None:
    """A crashed loader is a crashed agent: the worker is degraded for good. A loader thread stays
    down; a loader process is restarted (each crash is reported once)."""
    if loader is None:
        return
    for error in loader.take_crashes():
        metrics.loader_failed = repr(error)
        metrics.health.agent_crashed("loader", error)


def _lag(app: Any, metrics: WorkerMetrics, seen: dict[str, Any]) -> int:
    """Records not yet processed: input not yet published as batches (against the end offsets the
    last tick read) plus batches not yet loaded; -1 until the worker is ready."""
    highwaters = seen["highwaters"]
    if app.rebalancing or app.in_recovery or not highwaters or time.monotonic() - seen["at"] > STALE_S:
        return -1
    total = 0
    processed = metrics.journeys.processed if metrics.journeys is not None else {}
    for tp, high in highwaters.items():
        done = processed.get(tp.partition)
        if done is None:
            done = _committed(app, tp)
        total += max(0, int(high) - done)
    if metrics.loader is not None:
        if metrics.loader.lag < 0:
            return -1
        total += metrics.loader.lag
    return total


def _assigned(app: Any, topic: str) -> int:
    """How many partitions of the input topic this worker owns now."""
    try:
        return sum(1 for tp in app.consumer.assignment() if tp.topic == topic)
    except Exception:
        return 0


def _committed(app: Any, tp: Any) -> int:
    """Committed offset of a partition this process has not consumed from yet (0 if none).

    Faust keeps the offsets it sought to on assignment in a private map; there is no public API.
    """
    offset = getattr(app.consumer, "_committed_offset", {}).get(tp)
    return int(offset or 0)


def _prometheus(metrics: WorkerMetrics, lag: int) -> str:
    journeys, loader = metrics.journeys or JourneyCounters(), metrics.loader or LoaderCounters()
    inserts = sorted(loader.insert_seconds)
    p50 = inserts[len(inserts) // 2] if inserts else 0.0
    p99 = inserts[int(len(inserts) * 0.99)] if inserts else 0.0
    lines = [
        "# TYPE touchpath_events_in_total counter",
        f"touchpath_events_in_total {journeys.events_in}",
        "# TYPE touchpath_bad_events_total counter",
        f"touchpath_bad_events_total {journeys.bad}",
        "# TYPE touchpath_duplicate_events_total counter",
        f"touchpath_duplicate_events_total {journeys.duplicates}",
        "# TYPE touchpath_input_gap_records_total counter",
        f"touchpath_input_gap_records_total {journeys.gaps_filled}",
        "# TYPE touchpath_records_out_total counter",
        f"touchpath_records_out_total {journeys.records_out}",
        "# TYPE touchpath_sink_rows_total counter",
        f"touchpath_sink_rows_total {loader.rows}",
        "# TYPE touchpath_sink_errors_total counter",
        f"touchpath_sink_errors_total {loader.store_errors}",
        "# TYPE touchpath_consumer_lag gauge",
        f"touchpath_consumer_lag {lag}",
        "# TYPE touchpath_event_to_row_latency_ms summary",
        f'touchpath_event_to_row_latency_ms{{quantile="0.5"}} {metrics.health.latency_ms(0.5) or 0}',
        f'touchpath_event_to_row_latency_ms{{quantile="0.99"}} {metrics.health.latency_ms(0.99) or 0}',
        "# TYPE touchpath_rerouted_records_total counter",
        f"touchpath_rerouted_records_total {journeys.rerouted}",
        "# TYPE touchpath_agent_crashes_total counter",
        f"touchpath_agent_crashes_total {metrics.health.crash_count}",
        "# TYPE touchpath_batch_insert_seconds summary",
        f'touchpath_batch_insert_seconds{{quantile="0.5"}} {p50:.6f}',
        f'touchpath_batch_insert_seconds{{quantile="0.99"}} {p99:.6f}',
        f"touchpath_batch_insert_seconds_count {len(inserts)}",
    ]
    return "\n".join(lines) + "\n"


def run_worker(settings: Settings, model: JourneyModel, web_port: int, role: Role = Role.ALL) -> None:
    """Create topics, start the loader when this process loads, and run until stopped.

    `--role all` runs the loader in a child process (TOUCHPATH_LOADER=process, the default), which
    alone opens the store; TOUCHPATH_LOADER=thread keeps it in a thread of this process.
    """
    # The libraries' own logs (kafka-python in the loader thread; Faust, mode, aiokafka) as JSON lines.
    logging.config.dictConfig(stdlib_logging_config(settings.log_level))
    names = topics.TopicNames.with_prefix(settings.topic_prefix)
    topics.ensure_topics(
        settings.kafka_bootstrap, topics.TopicPlan(partitions=settings.partitions), names=names
    )
    health = WorkerHealth()  # from the process start: latency samples only of events arriving since
    in_child = role is Role.ALL and settings.loader == "process"
    # chDB allows one process per data dir: with the loader in a child, this process never opens it.
    store = open_store(settings) if role is not Role.JOURNEYS and not in_child else None
    loader: LoaderView | None = None
    producer: KafkaProducer | None = None
    if in_child:
        loader = LoaderProcess(settings, model, health)
    elif store is not None:
        loader, producer = build_loader(settings, model, store, health)
    try:
        if loader is not None:
            loader.start()
        if role is Role.LOADER:
            assert isinstance(loader, Loader)
            _serve_loader(loader, settings, web_port, health)
            return
        app = create_app(settings, model, web_port, loader, health)
        worker = faust.Worker(
            app,
            loglevel=settings.log_level.upper(),
            logging_config=stdlib_logging_config(settings.log_level),  # Faust's own logs as JSON lines
            quiet=True,
            redirect_stdouts=False,
        )
        worker.spinner = None  # its terminal escapes would interleave with the JSON lines
        worker.execute_from_commandline()
    finally:
        if loader is not None:
            loader.stop()
        if producer is not None:
            producer.close()
        if store is not None:
            store.close()


def _serve_loader(loader: Loader, settings: Settings, web_port: int, health: WorkerHealth) -> None:
    """A loader-only process: /health and /metrics on aiohttp until SIGTERM or SIGINT."""
    from aiohttp import web  # noqa: PLC0415 -- Faust's own dependency; only this role needs it directly

    metrics = WorkerMetrics(None, loader.counters, health=health)
    health.partitions_assigned(0)  # a loader folds no input partition: it reads every journey-events one

    async def health_page(request: web.Request) -> web.Response:
        _note_loader(metrics, loader)
        if loader.counters.lag >= 0:  # resumed from sink_progress and read the partitions' ends
            health.state_recovered()
        body = health_body(metrics, loader.counters.lag, 0, rebalancing=False)
        return web.json_response(body, status=Status(body["status"]).http_code)

    async def prometheus(request: web.Request) -> web.Response:
        _note_loader(metrics, loader)
        return web.Response(text=_prometheus(metrics, loader.counters.lag), content_type="text/plain")

    async def serve() -> None:
        server = web.Application()
        server.router.add_get("/health", health_page)
        server.router.add_get("/metrics", prometheus)
        runner = web.AppRunner(server)
        await runner.setup()
        host = "127.0.0.1" if settings.web_host is None else settings.web_host
        await web.TCPSite(runner, host, web_port).start()
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, stopped.set)
        await stopped.wait()
        await runner.cleanup()

    if threading.current_thread() is not threading.main_thread():
        raise TouchpathError("the loader role runs in the main thread")
    asyncio.run(serve())
