"""The `touchpath` command line: run, demo, simulate, sql, journeys, bench."""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog

from events.errors import DefinitionError, TouchpathError
from projections.engine import JourneyEngine
from projections.journeys import JourneyModel
from streams.alerting import AlertMode, EmbeddedAlerting, embedded_alerting
from streams.bench import bench_engine
from streams.definitions import load_journeys
from streams.logs import configure_logging
from streams.progress import Progress
from streams.runner import EmbeddedRunner, RunStats, numbered_lines, restore_state
from streams.settings import Settings
from streams.simulator import START as SIMULATION_START
from streams.simulator import SimulationConfig, simulate, truth_lines
from streams.store import ClickHouseProjectionStore
from streams.summary import render_table, summarise

log = structlog.get_logger("touchpath")

EPILOG = """Settings come from TOUCHPATH_* environment variables: TOUCHPATH_DATA_DIR (embedded chDB
data dir, default ./touchpath-data), TOUCHPATH_CLICKHOUSE_URL (use a ClickHouse server instead,
e.g. http://default:@localhost:8123/default), TOUCHPATH_JOURNEYS (journey file; default: the
shipped example), TOUCHPATH_LOG_LEVEL."""


def _journeys_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--journeys", type=Path, help="journey definition file (default: TOUCHPATH_JOURNEYS or the example)"
    )


def _data_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, help="embedded chDB data dir (default: TOUCHPATH_DATA_DIR, ./touchpath-data)"
    )


@dataclass(frozen=True, slots=True)
class CommandGroups:
    """Where feature modules add their subcommands: top level, `journeys ...` and `bench ...`."""

    top: Any
    journeys: Any
    bench: Any


# Feature modules with a `register(groups: CommandGroups) -> None` that adds their subcommands;
# each subcommand sets `handler` (a function taking the parsed args and returning an exit code).
EXTENSIONS: tuple[str, ...] = (
    "streams.worker_cli",
    "streams.ingest_cli",
    "streams.replay_cli",
    "streams.alerts_cli",
    "streams.digest_cli",
    "streams.erasure_cli",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="touchpath",
        description="Customer-journey analytics: rebuild each customer's path, compare it with the "
        "ideal journey of their persona, and project deviations and friction into ClickHouse.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="process a JSONL file of touchpoint events into the projections (embedded default)",
        description="Read touchpoint events (one JSON object per line), validate them, fold them "
        "into journeys and write the projections. Bad lines go to bad_events with their line "
        "number and reason; accepted + bad = lines read. Re-running the same input changes nothing.",
    )
    run.add_argument("--input", required=True, help="JSONL file, or - for standard input")
    _journeys_arg(run)
    _data_dir_arg(run)
    run.add_argument("--scenario", default="live", help="scenario name written on every row (default: live)")
    run.add_argument(
        "--alerts",
        choices=[mode.value for mode in AlertMode],
        help="friction spike alerts: send (record + deliver to the owning team's webhooks; default for "
        "the live scenario), record (alerts table only; default for other scenarios) or off",
    )
    run.set_defaults(handler=cmd_run)

    demo = sub.add_parser(
        "demo",
        help="simulate traffic, run it, print a summary and write an HTML report",
        description="Simulate customers walking their persona's journeys (with injected deviations, "
        "friction incidents, late and duplicate events), run them through the engine into the "
        "embedded ClickHouse, print the summary and write an offline HTML report.",
    )
    demo.add_argument("--customers", type=int, default=2000)
    demo.add_argument("--days", type=int, default=14)
    demo.add_argument("--seed", type=int, default=7)
    _journeys_arg(demo)
    _data_dir_arg(demo)
    demo.add_argument("--report", type=Path, help="HTML report path (default: DATA_DIR/report.html)")
    demo.set_defaults(handler=cmd_demo)

    simulate_cmd = sub.add_parser(
        "simulate",
        help="write simulated events and their ground truth",
        description="Deterministic simulator: the same seed always writes the same files.",
    )
    simulate_cmd.add_argument("--customers", type=int, default=1000)
    simulate_cmd.add_argument("--days", type=int, default=14)
    simulate_cmd.add_argument("--seed", type=int, default=1)
    simulate_cmd.add_argument("--out", type=Path, required=True, help="events JSONL (arrival order)")
    simulate_cmd.add_argument("--truth", type=Path, help="ground truth JSONL, one line per journey instance")
    _journeys_arg(simulate_cmd)
    simulate_cmd.set_defaults(handler=cmd_simulate)

    sql = sub.add_parser(
        "sql",
        help="run a read-only SQL query against the projections",
        description="Read-only: writes are refused. Bind parameters server-side with {name:Type} "
        'in the query and --param name=value, e.g. touchpath sql --param p=online_buyer "SELECT '
        'count() FROM journey_instances FINAL WHERE persona = {p:String}"',
    )
    sql.add_argument("query")
    _data_dir_arg(sql)
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    sql.set_defaults(handler=cmd_sql)

    journeys = sub.add_parser("journeys", help="work with journey definition files")
    journeys_sub = journeys.add_subparsers(dest="journeys_command", required=True, metavar="ACTION")
    check = journeys_sub.add_parser("check", help="validate a journey file; errors name the line and field")
    check.add_argument("file", type=Path)
    check.set_defaults(handler=cmd_journeys)

    bench = sub.add_parser("bench", help="measure throughput (prints figures, asserts nothing)")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, metavar="TARGET")
    engine = bench_sub.add_parser(
        "engine", help="engine events/s, with and without chDB writes, and state bytes per journey"
    )
    engine.add_argument("--events", type=int, default=1_000_000)
    engine.add_argument("--json", action="store_true", help="print the figures as JSON")
    _journeys_arg(engine)
    engine.set_defaults(handler=cmd_bench)
    groups = CommandGroups(top=sub, journeys=journeys_sub, bench=bench_sub)
    for name in EXTENSIONS:
        importlib.import_module(name).register(groups)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings()
    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None) is not None:
        overrides["data_dir"] = args.data_dir
    if getattr(args, "journeys", None) is not None:
        overrides["journeys"] = args.journeys
    return settings.model_copy(update=overrides)


@contextmanager
def open_store(settings: Settings) -> Iterator[ClickHouseProjectionStore]:
    """The configured store with its schema in place; closed on exit."""
    if settings.clickhouse_url:
        store = ClickHouseProjectionStore.server(settings.clickhouse_url, settings.clickhouse_cluster)
    else:
        store = ClickHouseProjectionStore.embedded(settings.data_dir)
    try:
        store.create_schema()
        yield store
    finally:
        store.close()


def _read_lines(source: str) -> Iterator[tuple[int, bytes]]:
    if source == "-":
        yield from numbered_lines(sys.stdin.buffer)
        return
    try:
        with Path(source).open("rb") as handle:
            yield from numbered_lines(handle)
    except OSError as error:
        msg = f"cannot read input {source}: {error.strerror}"
        raise TouchpathError(msg) from error


def run_file(
    model: JourneyModel,
    store: ClickHouseProjectionStore,
    source: str,
    scenario: str = "live",
    alerting: EmbeddedAlerting | None = None,
) -> RunStats:
    """Run one JSONL source through the engine into the store, with progress on stderr."""
    engine = JourneyEngine(model, scenario)
    restored = restore_state(engine, store)
    if restored:
        print(f"continuing {restored:,} customers' journeys kept by earlier runs", file=sys.stderr)
    runner = EmbeddedRunner(engine, store, alerting=alerting, keep_state=True)
    progress = Progress(f"events from {source}")
    stats = runner.feed(_read_lines(source), source, progress.update)
    progress.update(stats.lines)
    progress.done()
    return stats


def print_summary(store: ClickHouseProjectionStore, stats: RunStats, scenario: str = "live") -> None:
    """The end-of-run summary on stdout."""
    print(
        f"\nlines read {stats.lines:,} = accepted {stats.accepted:,} "
        f"(of which {stats.duplicates:,} duplicates) + bad {stats.bad:,}"
    )
    for section in summarise(store, scenario):
        if section.rows:
            print(f"\n{section.title}\n{render_table(section.columns, section.rows)}")


def cmd_run(args: argparse.Namespace) -> int:
    """touchpath run."""
    settings = _settings(args)
    model = load_journeys(settings.journeys_path())
    with open_store(settings) as store:
        log.info("run.start", input=args.input, store=store.description, scenario=args.scenario)
        mode = AlertMode(args.alerts or ("send" if args.scenario == "live" else "record"))
        alerting = embedded_alerting(model, store, args.scenario, mode)
        stats = run_file(model, store, args.input, args.scenario, alerting)
        log.info("run.done", lines=stats.lines, accepted=stats.accepted, bad=stats.bad)
        print_summary(store, stats, args.scenario)
        if alerting is not None:
            print("\n" + "\n".join(alerting.finish(store).lines()))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """touchpath demo."""
    settings = _settings(args)
    model = load_journeys(settings.journeys_path())
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    events_path = settings.data_dir / "demo-events.jsonl"
    truth_path = settings.data_dir / "demo-truth.jsonl"
    simulation = simulate(model, SimulationConfig(customers=args.customers, days=args.days, seed=args.seed))
    events_path.write_bytes(b"\n".join(simulation.lines) + b"\n")
    truth_path.write_bytes(b"\n".join(truth_lines(simulation)) + b"\n")
    print(
        f"simulated {simulation.events:,} events of {args.customers:,} customers over {args.days} days "
        f"(+{simulation.duplicates} duplicates, {simulation.late} late, {simulation.bad} corrupt) "
        f"-> {events_path}"
    )
    with open_store(settings) as store:
        alerting = embedded_alerting(model, store, "live", AlertMode.SEND)
        stats = run_file(model, store, str(events_path), alerting=alerting)
        print_summary(store, stats)
        if alerting is not None:
            print("\n" + "\n".join(alerting.finish(store).lines()))
        from streams.report import write_report  # noqa: PLC0415 -- plotly loads only for reports

        report = args.report or settings.data_dir / "report.html"
        write_report(store, model, report, scenario="live")
        print(f"\nHTML report: {report}")
        from streams.digest_cli import write_team_digests  # noqa: PLC0415 -- only for the demo

        # The simulated weeks end `days` after the simulator's start; later events are second journeys.
        end = SIMULATION_START + timedelta(days=args.days)
        digests = write_team_digests(store, model, report.parent / "digests", end=end)
        print(f"team digests (the last simulated week): {len(digests)} in {report.parent / 'digests'}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """touchpath simulate."""
    settings = _settings(args)
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


def cmd_sql(args: argparse.Namespace) -> int:
    """touchpath sql."""
    settings = _settings(args)
    with open_store(settings) as store:
        columns, rows = store.query(args.query, _parse_params(args.param))
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
    settings = _settings(args)
    model = load_journeys(settings.journeys_path())
    figures = bench_engine(model, args.events)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:40s} {value:,.1f}" if isinstance(value, float) else f"{key:40s} {value}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `touchpath` console script."""
    args = build_parser().parse_args(argv)
    configure_logging(Settings().log_level)
    try:
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


if __name__ == "__main__":
    sys.exit(main())
