"""CLI commands for emitting events: `ingest` (Kafka), `serve` (embedded), `schema` and `bench ingest`."""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from events.errors import TouchpathError
from streams.cli.common import data_dir_arg, journeys_arg, print_figures, settings_of

# Light at import: the parser of every command is built before any handler runs (streams.cli.main);
# FastAPI, uvicorn, the Kafka SDK, pydantic models and chDB load inside the handlers.
if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from events.sdk import TouchpathClient
    from streams.cli.common import CommandGroups
    from streams.common.settings import Settings
    from streams.ingest.auth import RateLimiter, ReplayStore, RequestAuthenticator
    from streams.ingest.guard import ConnectionLimits
    from streams.ingest.http import IngestLimits
    from streams.store.clickhouse import ClickHouseProjectionStore

SCHEMA_ID = "https://touchpath.dev/schema/touchpoint-event.json"


def register(groups: CommandGroups) -> None:
    """Add `ingest`, `serve`, `schema` and `bench ingest`."""
    ingest = groups.top.add_parser(
        "ingest",
        help="HTTP ingest into Kafka: signed POST /v1/events, /health, /metrics",
        description="Serve signed POST /v1/events and write accepted events to the touchpoints topic "
        "(key = customer_id). A 2xx answer means Kafka acknowledged every accepted event; when it "
        "cannot within TOUCHPATH_INGEST_ACK_TIMEOUT_S the answer is 503. Keys: TOUCHPATH_INGEST_KEYS="
        '"key_id:secret,key_id2:secret2"; broker: TOUCHPATH_KAFKA_BOOTSTRAP.',
    )
    _server_args(ingest)
    ingest.add_argument("--topic", help="topic to write (default: TOUCHPATH_TOPIC_PREFIX + touchpoints)")
    ingest.set_defaults(handler=cmd_ingest)

    serve = groups.top.add_parser(
        "serve",
        help="embedded server: HTTP ingest + journey engine + chDB + read-only SQL in one process",
        description="Ingest over HTTP straight into the journey engine and the embedded ClickHouse "
        "(no Kafka). A 2xx answer means the events' rows are written. Also serves GET /v1/sql "
        "(read-only, keys from TOUCHPATH_SQL_KEYS), because only one process may open a chDB data dir.",
    )
    _server_args(serve)
    data_dir_arg(serve)
    serve.add_argument("--scenario", default="live", help="scenario name written on every row")
    serve.set_defaults(handler=cmd_serve)

    schema = groups.top.add_parser(
        "schema",
        help="print the touchpoint event JSON Schema",
        description="The JSON Schema of one touchpoint event, for producers in any language.",
    )
    schema.add_argument(
        "--out", type=Path, metavar="FILE", help="write to this file (default: standard output)"
    )
    schema.set_defaults(handler=cmd_schema)

    bench = groups.bench.add_parser(
        "ingest",
        help="events/s through HTTP ingest and the SDK, as ratios of a raw kafka-python producer",
        description="Sends the same simulated events through a raw kafka-python producer, the SDK and "
        "`touchpath ingest` (signed batches over HTTP), each to a fresh topic, and prints events/s, "
        "ratios to raw and request latency. Uses TOUCHPATH_KAFKA_BOOTSTRAP, or starts a throwaway "
        "broker with deploy/kafka/local.sh.",
    )
    bench.add_argument("--events", type=int, default=20_000, help="simulated events sent by each method")
    bench.add_argument("--batch", type=int, default=100, help="events per HTTP request")
    bench.add_argument("--concurrency", type=int, default=4, help="HTTP requests in flight")
    bench.add_argument("--rounds", type=int, default=3, help="methods take turns; each keeps its best round")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.set_defaults(handler=cmd_bench_ingest)


def _server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="bind address (default: TOUCHPATH_INGEST_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: TOUCHPATH_INGEST_PORT, 8080)")
    journeys_arg(parser)


# serve's --host and --port set the ingest_* settings.
INGEST_OPTIONS = {"host": "ingest_host", "port": "ingest_port"}


def _authenticator(settings: Settings, replay_store: ReplayStore | None = None) -> RequestAuthenticator:
    from streams.ingest.auth import RequestAuthenticator, parse_keys  # noqa: PLC0415 -- light imports at the top

    keys = parse_keys(settings.ingest_keys.get_secret_value())
    if not keys:
        msg = (
            "no API keys: set TOUCHPATH_INGEST_KEYS=key_id:secret[,key_id2:secret2] (secrets of at least "
            "16 random characters) before starting the server"
        )
        raise TouchpathError(msg)
    return RequestAuthenticator(keys, replay_store=replay_store)


def _limits(settings: Settings) -> tuple[IngestLimits, RateLimiter]:
    from streams.ingest.auth import RateLimiter  # noqa: PLC0415 -- light imports at the top
    from streams.ingest.http import IngestLimits  # noqa: PLC0415

    limits = IngestLimits(
        ack_timeout_s=settings.ingest_ack_timeout_s,
        max_future_s=settings.future_bound_s,
        body_timeout_s=settings.ingest_body_timeout_s,
    )
    if settings.ingest_rate_limit > 0 and settings.ingest_rate_burst < limits.max_events:
        msg = (
            f"TOUCHPATH_INGEST_RATE_BURST is {settings.ingest_rate_burst}, below the {limits.max_events} "
            "events one request may carry; raise it"
        )
        raise TouchpathError(msg)
    return limits, RateLimiter(settings.ingest_rate_limit, settings.ingest_rate_burst)


def connection_limits(settings: Settings) -> ConnectionLimits:
    """The HTTP connection limits from the settings."""
    from streams.ingest.guard import ConnectionLimits, default_max_connections  # noqa: PLC0415

    return ConnectionLimits(
        max_connections=settings.ingest_max_connections or default_max_connections(),
        header_timeout_s=settings.ingest_header_timeout_s,
        body_timeout_s=settings.ingest_body_timeout_s,
    )


def server_config(app: FastAPI, host: str, port: int, limits: ConnectionLimits) -> uvicorn.Config:
    """uvicorn settings with the connection cap, header timeout and keep-alive of `limits`."""
    import uvicorn  # noqa: PLC0415 -- light imports at the top

    from streams.ingest.guard import guarded_protocol  # noqa: PLC0415

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=10,
        http=guarded_protocol(limits),
        limit_concurrency=limits.max_connections,
        timeout_keep_alive=limits.keep_alive_s,
        backlog=min(2048, limits.max_connections),
    )


def run_server(app: FastAPI, host: str, port: int, what: str, limits: ConnectionLimits | None = None) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn finishes requests in progress first)."""
    import uvicorn  # noqa: PLC0415 -- light imports at the top

    from streams.ingest.guard import ConnectionLimits, install_repeat_filter  # noqa: PLC0415

    print(f"touchpath: {what} on http://{host}:{port} (Ctrl-C stops)", file=sys.stderr)
    # Each request allocates thousands of short-lived objects (freed by reference counting), which
    # would trigger a young collection every few requests rescanning the long-lived app, producer and
    # engine state; freezing that state and collecting less often cut ingest CPU per event by ~25%.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    install_repeat_filter()
    uvicorn.Server(server_config(app, host, port, limits or ConnectionLimits())).run()


def ingest_client(settings: Settings, topic: str) -> TouchpathClient:
    """The SDK producer behind `touchpath ingest`: no blocking beyond the ack timeout."""
    from events.sdk import ClientOptions, KafkaUnavailableError, TouchpathClient  # noqa: PLC0415

    ack = settings.ingest_ack_timeout_s
    options = ClientOptions(
        topic=topic, max_block_s=ack, request_timeout_s=max(ack, 5.0), client_id="touchpath-ingest"
    )
    try:
        return TouchpathClient(settings.kafka_bootstrap, options=options)
    except KafkaUnavailableError as error:
        msg = (
            f"touchpath ingest answers 2xx only for events Kafka acknowledged, so it needs Kafka: {error}. "
            "Set TOUCHPATH_KAFKA_BOOTSTRAP, or run `touchpath serve` for the embedded mode without Kafka."
        )
        raise TouchpathError(msg) from error


def cmd_ingest(args: argparse.Namespace) -> int:
    """touchpath ingest."""
    import structlog  # noqa: PLC0415 -- light imports at the top

    from streams.common.definitions import load_journeys  # noqa: PLC0415
    from streams.common.topics import TopicNames, TopicPlan, ensure_topics  # noqa: PLC0415
    from streams.ingest.auth import TOLERANCE_S  # noqa: PLC0415
    from streams.ingest.http import KafkaSink, create_app  # noqa: PLC0415
    from streams.ingest.signatures import KafkaSignatures  # noqa: PLC0415

    log = structlog.get_logger("touchpath.ingest")
    settings = settings_of(args, INGEST_OPTIONS)
    _authenticator(settings)  # refuse to start without keys before reaching Kafka
    limits, limiter = _limits(settings)
    model = load_journeys(settings.journeys_path())
    names = TopicNames.with_prefix(settings.topic_prefix)
    topic = args.topic or names.touchpoints
    if args.topic is None:
        ensure_topics(settings.kafka_bootstrap, TopicPlan(partitions=settings.partitions), names=names)
    # Used signatures on a topic every replica writes and follows: a replay is refused after a
    # restart and by the other replicas (streams.ingest.signatures explains the remaining race).
    signatures = KafkaSignatures(settings.kafka_bootstrap, topic + ".signatures", TOLERANCE_S)
    try:
        authenticator = _authenticator(settings, signatures)
    except BaseException:
        signatures.close()
        raise
    sink = KafkaSink(ingest_client(settings, topic), settings.ingest_ack_timeout_s)
    try:
        app = create_app(sink, authenticator, limits=limits, limiter=limiter, registry=model.registry)
        log.info(
            "ingest.start",
            mode="kafka",
            bootstrap=settings.kafka_bootstrap,
            topic=topic,
            keys=len(authenticator.keys),
        )
        run_server(
            app,
            settings.ingest_host,
            settings.ingest_port,
            f"ingest into Kafka {settings.kafka_bootstrap} topic {topic}",
            connection_limits(settings),
        )
    finally:
        sink.close()
        signatures.close()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """touchpath serve."""
    import structlog  # noqa: PLC0415 -- light imports at the top

    from streams.cli.common import open_store  # noqa: PLC0415
    from streams.common.definitions import load_journeys  # noqa: PLC0415
    from streams.common.engines import journey_engine  # noqa: PLC0415
    from streams.embedded.run import continue_journeys  # noqa: PLC0415
    from streams.ingest.auth import RequestAuthenticator, parse_keys  # noqa: PLC0415
    from streams.ingest.http import EmbeddedSink, create_app  # noqa: PLC0415
    from streams.ingest.signatures import StoreSignatures  # noqa: PLC0415

    log = structlog.get_logger("touchpath.ingest")

    settings = settings_of(args, INGEST_OPTIONS)
    _authenticator(settings)  # refuse to start without keys before opening the store
    sql_keys = parse_keys(settings.sql_keys.get_secret_value(), "TOUCHPATH_SQL_KEYS")
    limits, limiter = _limits(settings)
    model = load_journeys(settings.journeys_path())
    with open_store(settings) as store:
        # Used signatures live in the store too, so a replay after a restart is refused.
        signatures = StoreSignatures(store)
        authenticator = _authenticator(settings, signatures)
        engine = journey_engine(model, args.scenario, settings.engine)
        continue_journeys(engine, store)  # as `run` does: the states kept beside the projections
        reader = _open_reader(settings)
        sink = EmbeddedSink(
            engine,
            store,
            reader,
            sql=reader.analyst_sql(settings.sql_limits(), settings.sql_workers),
            sql_workers=settings.sql_workers,
        )
        try:
            app = create_app(
                sink,
                authenticator,
                limits=limits,
                limiter=limiter,
                registry=model.registry,
                sql_authenticator=RequestAuthenticator(sql_keys, replay_store=signatures)
                if sql_keys
                else None,
            )
            log.info("serve.start", mode="embedded", store=store.description, scenario=args.scenario)
            run_server(
                app,
                settings.ingest_host,
                settings.ingest_port,
                f"embedded ingest into {store.description}",
                connection_limits(settings),
            )
        finally:
            sink.close()
            reader.close()
    return 0


def _open_reader(settings: Settings) -> ClickHouseProjectionStore:
    """A second client on the configured store (the analyst DSN if set), for the SQL endpoint."""
    from streams.store.clickhouse import ClickHouseProjectionStore  # noqa: PLC0415 -- light imports at the top

    if settings.clickhouse_url:
        url = settings.sql_clickhouse_url or settings.clickhouse_url
        return ClickHouseProjectionStore.server(url, settings.clickhouse_cluster)
    return ClickHouseProjectionStore.embedded(settings.data_dir)


def event_schema() -> dict[str, Any]:
    """The JSON Schema of one touchpoint event (pydantic's, with an id and a description)."""
    from events.model import TouchpointEvent  # noqa: PLC0415 -- light imports at the top

    body = TouchpointEvent.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **body,
        "description": "One touchpoint event as sent to POST /v1/events or the touchpoints topic. "
        "occurred_at is RFC 3339 with an offset; at most 32 KB serialised; attributes at most 8 KB.",
    }


def cmd_schema(args: argparse.Namespace) -> int:
    """touchpath schema."""
    import orjson  # noqa: PLC0415 -- light imports at the top

    text = orjson.dumps(event_schema(), option=orjson.OPT_INDENT_2) + b"\n"
    if args.out is None:
        sys.stdout.write(text.decode())
    else:
        args.out.write_bytes(text)
        print(f"wrote the touchpoint event JSON Schema to {args.out}", file=sys.stderr)
    return 0


def cmd_bench_ingest(args: argparse.Namespace) -> int:
    """touchpath bench ingest."""
    from streams.bench.ingest import bench_ingest  # noqa: PLC0415 -- loads the simulator only when used
    from streams.common.definitions import load_journeys  # noqa: PLC0415 -- light imports at the top

    settings = settings_of(args, INGEST_OPTIONS)
    model = load_journeys(settings.journeys_path())
    figures = bench_ingest(
        model, args.events, batch=args.batch, concurrency=args.concurrency, rounds=args.rounds
    )
    print_figures(figures, as_json=args.json, digits=2)
    return 0
