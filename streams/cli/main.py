"""The `touchpath` command line: run, demo, simulate, sql, journeys, bench."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from events.errors import DefinitionError, TouchpathError
from streams.cli import alerts, digest, erasure, ingest, native, replay, sql_bench, worker
from streams.cli.common import (
    CommandGroups,
    TouchpathParser,
    data_dir_arg,
    journeys_arg,
    open_existing_store,
    open_store,
    print_figures,
    settings_of,
)

# Start-up stays light (`touchpath --help` well under a second): this module and the *_cli modules
# import only argparse-level code at the top; each handler imports chDB, pydantic models, plotly or
# structlog when it runs.
if TYPE_CHECKING:
    from streams.common.settings import Settings
    from streams.store.clickhouse import ClickHouseProjectionStore
    from streams.store.sqlguard import GuardedSQL

__all__ = ["CommandGroups", "build_parser", "main", "open_existing_store", "open_store"]

# The values of streams.alerting.detection.AlertMode, spelled out so the parser needs no import of the
# detector (a unit test keeps them equal).
ALERT_MODES = ("send", "record", "off")

EPILOG = (
    "Settings come from TOUCHPATH_* environment variables: TOUCHPATH_DATA_DIR (embedded chDB data dir, "
    "default ./touchpath-data), TOUCHPATH_CLICKHOUSE_URL (use a ClickHouse server instead, e.g. "
    "http://default:@localhost:8123/default), TOUCHPATH_JOURNEYS (journey file; default: the shipped "
    "example), TOUCHPATH_LOG_LEVEL. `touchpath COMMAND --help` explains a command and its options."
)


# Feature modules with a `register(groups: CommandGroups) -> None` that adds their subcommands;
# each subcommand sets `handler` (a function taking the parsed args and returning an exit code).


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = TouchpathParser(
        prog="touchpath",
        description="Customer-journey analytics: rebuild each customer's path, compare it with the "
        "ideal journey of their persona, and project deviations and friction into ClickHouse.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="process a JSONL file of touchpoint events into the projections (embedded default)",
        description="Read touchpoint events (one JSON object per line), validate them, fold them "
        "into journeys and write the projections. Bad lines go to bad_events with their line "
        "number and reason; blank lines are counted and skipped; lines read = accepted + bad + blank. "
        "Re-running the same input changes nothing.",
    )
    run.add_argument("--input", required=True, metavar="FILE", help="JSONL file, or - for standard input")
    journeys_arg(run)
    data_dir_arg(run)
    run.add_argument("--scenario", default="live", help="scenario name written on every row")
    run.add_argument(
        "--not-after",
        default="now",
        metavar="now|none|TIME",
        help="quarantine events later than this as future_timestamp: now (default: the time the run "
        "starts plus TOUCHPATH_FUTURE_BOUND_S), an RFC 3339 time (reproducible re-runs), or none",
    )
    run.add_argument(
        "--alerts",
        choices=ALERT_MODES,
        help="friction spike alerts: send (record + deliver to the owning team's webhooks), record "
        "(alerts table only) or off (default: send for the live scenario, record for others)",
    )
    run.set_defaults(handler=cmd_run)

    demo = sub.add_parser(
        "demo",
        help="simulate traffic, run it, print a summary and write an HTML report",
        description="Simulate customers walking their persona's journeys (with injected deviations, "
        "late and duplicate events, and one friction incident at a busy touchpoint), run them through "
        "the engine into the embedded ClickHouse with alerts delivered to a local webhook receiver, "
        "print the summary and write an offline HTML report.",
    )
    demo.add_argument("--customers", type=int, default=2000, help="simulated customers")
    demo.add_argument(
        "--days", type=int, default=14, help="simulated days (the incident is 4 days before the end)"
    )
    demo.add_argument(
        "--seed", type=int, default=7, help="random seed: the same seed simulates the same events"
    )
    journeys_arg(demo)
    data_dir_arg(demo)
    demo.add_argument(
        "--report", type=Path, metavar="FILE", help="HTML report path (default: DATA_DIR/report.html)"
    )
    demo.set_defaults(handler=cmd_demo)

    simulate_cmd = sub.add_parser(
        "simulate",
        help="write simulated events and their ground truth",
        description="Deterministic simulator: the same seed always writes the same files.",
    )
    simulate_cmd.add_argument("--customers", type=int, default=1000, help="simulated customers")
    simulate_cmd.add_argument("--days", type=int, default=14, help="simulated days")
    simulate_cmd.add_argument("--seed", type=int, default=1, help="random seed")
    simulate_cmd.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="events JSONL (arrival order)"
    )
    simulate_cmd.add_argument(
        "--truth",
        type=Path,
        metavar="FILE",
        help="ground truth JSONL, one line per journey instance (default: none)",
    )
    journeys_arg(simulate_cmd)
    simulate_cmd.set_defaults(handler=cmd_simulate)

    sql = sub.add_parser(
        "sql",
        help="run a read-only SQL query against the projections",
        description="Read-only: writes are refused. Bind parameters server-side with {name:Type} "
        'in the query and --param name=value, e.g. touchpath sql --param p=online_buyer "SELECT '
        'count() FROM journey_instances FINAL WHERE persona = {p:String}". The data dir must hold a '
        "store (`touchpath demo` or `touchpath run` writes one).",
    )
    sql.add_argument("query", help="one SELECT (or WITH, SHOW, DESCRIBE, EXPLAIN) statement")
    data_dir_arg(sql)
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table", help="output format")
    sql.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a query parameter, repeatable (default: none)",
    )
    sql.set_defaults(handler=cmd_sql, logs=False)  # prints results only: no structlog to load

    journeys = sub.add_parser("journeys", help="work with journey definition files")
    journeys_sub = journeys.add_subparsers(dest="journeys_command", required=True, metavar="ACTION")
    check = journeys_sub.add_parser("check", help="validate a journey file; errors name the line and field")
    check.add_argument("file", type=Path, help="journey definition file (YAML)")
    check.set_defaults(handler=cmd_journeys)

    bench = sub.add_parser("bench", help="measure throughput (prints figures, asserts nothing)")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, metavar="TARGET")
    engine = bench_sub.add_parser(
        "engine",
        help="engine events/s, Python and native side by side, with and without chDB writes, state bytes",
    )
    engine.add_argument("--events", type=int, default=1_000_000, help="simulated events to process")
    engine.add_argument("--json", action="store_true", help="print the figures as JSON")
    engine.add_argument(
        "--engine",
        choices=("both", "python", "native"),
        default="both",
        help="which engines to measure (default both, side by side with their ratio)",
    )
    journeys_arg(engine)
    engine.set_defaults(handler=cmd_bench)
    groups = CommandGroups(top=sub, journeys=journeys_sub, bench=bench_sub)
    for group in (worker, ingest, replay, alerts, native, sql_bench, digest, erasure):
        group.register(groups)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    """touchpath run."""
    import structlog  # noqa: PLC0415 -- see the module comment

    from streams.alerting.detection import AlertMode, embedded_alerting  # noqa: PLC0415
    from streams.common.definitions import load_journeys  # noqa: PLC0415
    from streams.embedded.run import print_summary, run_file  # noqa: PLC0415

    log = structlog.get_logger("touchpath")
    settings = settings_of(args)
    model = load_journeys(settings.journeys_path())
    with open_store(settings) as store:
        log.info("run.start", input=args.input, store=store.description, scenario=args.scenario)
        mode = AlertMode(args.alerts or ("send" if args.scenario == "live" else "record"))
        alerting = embedded_alerting(model, store, args.scenario, mode)
        not_after_ms = _not_after(args.not_after, settings)
        stats = run_file(
            model,
            store,
            args.input,
            args.scenario,
            alerting,
            not_after_ms=not_after_ms,
            engine_kind=settings.engine,
        )
        log.info("run.done", lines=stats.lines, accepted=stats.accepted, bad=stats.bad, blank=stats.blank)
        print_summary(store, stats, args.scenario)
        if alerting is not None:
            print("\n" + "\n".join(alerting.finish(store).lines()))
    return 0


def _not_after(value: str, settings: Settings) -> int | None:
    """--not-after as epoch ms: the shell reads the wall clock here, the engine never does."""
    import time  # noqa: PLC0415 -- see the module comment

    from events.model import EPOCH, ONE_MS, parse_time  # noqa: PLC0415

    if value == "none":
        return None
    if value == "now":
        return int((time.time() + settings.future_bound_s) * 1000)
    try:
        moment = parse_time(value)
    except ValueError as error:
        msg = f"--not-after takes now, none or an RFC 3339 time with an offset: {error}"
        raise TouchpathError(msg) from error
    return (moment - EPOCH) // ONE_MS


def cmd_demo(args: argparse.Namespace) -> int:
    """touchpath demo."""
    from streams.cli.demo import run_demo  # noqa: PLC0415 -- see the module comment

    return run_demo(args, settings_of(args))


def cmd_simulate(args: argparse.Namespace) -> int:
    """touchpath simulate."""
    from streams.common.definitions import load_journeys  # noqa: PLC0415 -- see the module comment
    from streams.sim.simulator import SimulationConfig, simulate, truth_lines  # noqa: PLC0415

    settings = settings_of(args)
    model = load_journeys(settings.journeys_path())
    simulation = simulate(model, SimulationConfig(customers=args.customers, days=args.days, seed=args.seed))
    args.out.write_bytes(b"\n".join(simulation.lines) + b"\n")
    if args.truth is not None:
        args.truth.write_bytes(b"\n".join(truth_lines(simulation)) + b"\n")
    print(
        f"wrote {len(simulation.lines):,} lines ({simulation.events:,} events, {simulation.duplicates} "
        f"duplicates, {simulation.late} late, {simulation.bad} corrupt) to {args.out}"
        + (f"; truth for {len(simulation.truth):,} journey instances to {args.truth}" if args.truth else "")
    )
    return 0


def _parse_params(pairs: Sequence[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            msg = f"--param takes NAME=VALUE, got '{pair}'"
            raise TouchpathError(msg)
        out[name] = value
    return out


def analyst_sql(settings: Settings, store: ClickHouseProjectionStore, sessions: int = 1) -> GuardedSQL:
    """The guarded read-only query path: on the analyst DSN if one is set, else on the store's target."""
    from streams.store.clickhouse import ClickHouseProjectionStore  # noqa: PLC0415 -- see the module comment

    if settings.clickhouse_url and settings.sql_clickhouse_url:
        reader = ClickHouseProjectionStore.server(settings.sql_clickhouse_url)
        reader.close()  # only its connect() is used: every analyst session is a new client
        return reader.analyst_sql(settings.sql_limits(), sessions)
    return store.analyst_sql(settings.sql_limits(), sessions)


def cmd_sql(args: argparse.Namespace) -> int:
    """touchpath sql."""
    import csv  # noqa: PLC0415 -- see the module comment
    import json  # noqa: PLC0415

    from streams.store.summary import render_table  # noqa: PLC0415

    settings = settings_of(args)
    parameters = _parse_params(args.param)
    with open_existing_store(settings) as store:
        guard = analyst_sql(settings, store)
        try:
            columns, rows = guard.run(args.query, parameters)
        finally:
            guard.close()
    if args.format == "json":
        for row in rows:
            print(json.dumps(dict(zip(columns, row, strict=True)), default=str))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        print(render_table(columns, rows))
    return 0


def cmd_journeys(args: argparse.Namespace) -> int:
    """touchpath journeys check."""
    from streams.common.definitions import load_journeys  # noqa: PLC0415 -- see the module comment

    model = load_journeys(args.file)
    for persona in model.personas:
        for journey in model.by_persona[persona]:
            steps = " -> ".join(
                step.name + ("?" if step.optional else "") + ("*" if step.repeatable else "")
                for step in journey.steps
            )
            print(f"{persona}: {journey.key}: {steps}")
    print(f"{args.file}: OK ({len(model.journeys)} journeys, {len(model.registry.touchpoints)} touchpoints)")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """touchpath bench."""
    from streams.bench.engine import bench_engine  # noqa: PLC0415
    from streams.common.definitions import load_journeys  # noqa: PLC0415

    settings = settings_of(args)
    model = load_journeys(settings.journeys_path())
    engines = ("python", "native") if args.engine == "both" else (args.engine,)
    figures = bench_engine(model, args.events, engines)
    print_figures(figures, as_json=args.json)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `touchpath` console script."""
    args = build_parser().parse_args(argv)
    import os  # noqa: PLC0415 -- see the module comment

    from streams.common.logs import configure_logging  # noqa: PLC0415 -- structlog loads after parsing
    from streams.common.settings import Settings  # noqa: PLC0415

    previous = None
    try:
        if getattr(args, "logs", True):
            configure_logging(Settings().log_level)
        # Everything this process creates (chDB files, spools, reports) gets the private mode.
        previous = os.umask(Settings().umask_bits())
        code: int = args.handler(args)
        return code
    except DefinitionError as error:
        print(str(error), file=sys.stderr)
        return 1
    except TouchpathError as error:
        print(f"touchpath: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    finally:
        if previous is not None:
            os.umask(previous)


if __name__ == "__main__":
    sys.exit(main())
