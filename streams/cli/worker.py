"""`touchpath worker`: run a Faust worker against Kafka (embedded chDB or a ClickHouse server)."""

from __future__ import annotations

import argparse
from typing import Any

from streams.cli.common import data_dir_arg, journeys_arg, print_figures, settings_of

# Light at import: the parser of every command is built before any handler runs (streams.cli.main).


def register(groups: Any) -> None:
    """Add the `worker` subcommand."""
    worker = groups.top.add_parser(
        "worker",
        help="run a streaming worker: Kafka touchpoints -> journeys -> ClickHouse projections",
        description="Consume the touchpoints topic with Faust, fold events into per-customer journey "
        "state, and publish one record per partition and batch to touchpath.journey-events (the batch's "
        "rows and the changed customers' states: the durable state); quarantined input also goes to "
        "touchpoints.bad. The loader writes those batches to the projections and runs alerting. Roles: "
        "`all` (default) does both in one process; `journeys` processes share the input partitions (at "
        "most one per partition) and `loader` loads (one per embedded chDB data dir, any number with "
        "TOUCHPATH_CLICKHOUSE_URL). Serves /health and /metrics on --web-port.",
    )
    worker.add_argument("--bootstrap", help="Kafka bootstrap servers (default: TOUCHPATH_KAFKA_BOOTSTRAP)")
    data_dir_arg(worker)
    journeys_arg(worker)
    worker.add_argument(
        "--partitions", type=int, help="partitions for topics it creates (default: TOUCHPATH_PARTITIONS, 6)"
    )
    worker.add_argument(
        "--web-port", type=int, help="port of /health and /metrics (default: TOUCHPATH_WEB_PORT, 6066)"
    )
    worker.add_argument(
        "--role",
        choices=("all", "journeys", "loader"),
        default="all",
        help="all: fold and load in one process (default); journeys: fold input partitions (up to one "
        "process per partition); loader: write the journey batches to the store and run alerting (one "
        "per embedded data dir; any number with TOUCHPATH_CLICKHOUSE_URL)",
    )
    worker.set_defaults(handler=cmd_worker)
    bench = groups.bench.add_parser(
        "stream",
        help="worker events/s vs a plain Kafka consumer, and event-to-row latency",
        description="Pre-loads simulated events into a fresh topic (on TOUCHPATH_KAFKA_BOOTSTRAP, or a "
        "throwaway local broker), measures a plain kafka-python consumer reading them (the ceiling), then "
        "a worker from its first event to the last projection row, then p50/p99 event-to-row latency "
        "with events paced at 1,000/s. Prints figures; asserts nothing.",
    )
    bench.add_argument("--events", type=int, default=200_000, help="simulated events to pre-load")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.add_argument(
        "--workers", type=int, default=1, help="journey worker processes (2 or more: plus one loader process)"
    )
    bench.set_defaults(handler=cmd_bench_stream)


def cmd_bench_stream(args: argparse.Namespace) -> int:
    """touchpath bench stream."""
    from streams.bench.stream import bench_stream  # noqa: PLC0415 -- loads kafka only when asked
    from streams.common.definitions import load_journeys  # noqa: PLC0415 -- light imports at the top

    figures = bench_stream(load_journeys(settings_of(args).journeys_path()), args.events, args.workers)
    print_figures(figures, as_json=args.json)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """touchpath worker."""
    from streams.common.definitions import load_journeys  # noqa: PLC0415 -- light imports at the top

    settings = settings_of(
        args, {"bootstrap": "kafka_bootstrap", "partitions": "partitions", "web_port": "web_port"}
    )
    from streams.worker.app import Role, run_worker  # noqa: PLC0415 -- faust loads only for this command

    run_worker(settings, load_journeys(settings.journeys_path()), settings.web_port, Role(args.role))
    return 0
