"""CLI for redesigns: replay, compare, scenarios list/drop, journeys diff and bench replay."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from streams.cli.common import (
    CommandGroups,
    data_dir_arg,
    journeys_arg,
    open_existing_store,
    open_store,
    print_figures,
    require_store,
    settings_of,
)

# Light at import: the parser of every command is built before any handler runs (streams.cli.main);
# handlers import the engine, the store and the report modules when they run.
if TYPE_CHECKING:
    from projections.journeys import JourneyModel
    from streams.replay.history import WouldBeAlerts
    from streams.store.clickhouse import ClickHouseProjectionStore


def _data_dir(parser: argparse.ArgumentParser) -> None:
    data_dir_arg(parser)


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, default=str))


def would_be_alerts() -> WouldBeAlerts:
    """The recorder of alerts a replay would have raised: written under the replay's scenario from
    its stored rows, never delivered."""
    from streams.alerting.detection import WouldBeAlertRecorder  # noqa: PLC0415 -- keeps `touchpath --help` light

    return WouldBeAlertRecorder()


# ---- replay --------------------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    """touchpath replay."""
    from streams.common.definitions import load_journeys  # noqa: PLC0415
    from streams.common.topics import TOUCHPOINTS  # noqa: PLC0415
    from streams.replay.history import replay_from_clickhouse, replay_from_kafka, window_of  # noqa: PLC0415
    from streams.store.scenarios import LIVE  # noqa: PLC0415

    settings = settings_of(args)
    if args.source != "kafka":
        require_store(settings)  # it reads the live scenario's events: refuse an empty data dir first
    model = load_journeys(args.journeys)
    scenario = args.scenario
    window = window_of(args.start, args.end)
    with open_store(settings) as store:
        if args.source == "kafka":
            stats = replay_from_kafka(
                store,
                model,
                scenario,
                args.bootstrap or settings.kafka_bootstrap,
                window,
                topic=args.topic or settings.topic_prefix + TOUCHPOINTS,
                alerts=would_be_alerts(),
                journeys_file=str(args.journeys),
                engine_kind=settings.engine,
            )
        else:
            stats = replay_from_clickhouse(
                store,
                model,
                scenario,
                window,
                workers=args.workers,
                alerts=would_be_alerts(),
                journeys_file=str(args.journeys),
                engine_kind=settings.engine,
            )
    if stats.events == 0:
        print(
            "touchpath: note: no recorded events in that window (the live scenario's touchpoint_events "
            "is empty there); the scenario is empty",
            file=sys.stderr,
        )
    if args.json:
        _print_json(stats.as_dict())
    else:
        print(
            f"replayed {stats.events:,} events of {stats.customers:,} customers from {stats.source} into "
            f"scenario '{scenario}' in {stats.seconds:.1f}s ({stats.events_per_s:,.0f} events/s); "
            f"{stats.quarantined:,} refused by the new registry; {stats.alerts:,} would-be alerts recorded"
        )
        print(f"next: touchpath compare {LIVE} {scenario} --html compare-{scenario}.html")
    return 0


# ---- compare -------------------------------------------------------------------------------------


def _scenario_model(
    store: ClickHouseProjectionStore, scenario: str, fallback: Path
) -> tuple[JourneyModel, str]:
    """The definitions a scenario was made with (its run record), else the given journey file."""
    from projections.journeys import parse_definitions  # noqa: PLC0415
    from streams.common.definitions import load_journeys  # noqa: PLC0415
    from streams.store.scenarios import LIVE, run_record  # noqa: PLC0415

    record = run_record(store, scenario)
    if record is not None:
        return parse_definitions(record.definitions, f"<{scenario} run record>"), record.describe()
    how = "production" if scenario == LIVE else "touchpath run"
    return load_journeys(fallback), f"{how}, journeys from {fallback}"


def cmd_compare(args: argparse.Namespace) -> int:
    """touchpath compare."""
    from projections.diff.journeys import diff_models  # noqa: PLC0415
    from streams.replay.compare import compare_scenarios, render_text  # noqa: PLC0415
    from streams.store.scenarios import check_name, run_record  # noqa: PLC0415

    settings = settings_of(args)
    check_name(args.base)
    check_name(args.scenario)
    with open_existing_store(settings) as store:
        comparison = compare_scenarios(store, args.base, args.scenario, sample=args.sample)
        for name in (args.base, args.scenario):
            record = run_record(store, name)
            if record is not None and not record.complete:
                print(
                    f"touchpath: warning: the replay of '{name}' did not finish; its rows are partial. "
                    f"Run the replay again before trusting this comparison.",
                    file=sys.stderr,
                )
        if args.html is not None:
            from streams.reports.comparison import write_compare_report  # noqa: PLC0415 -- plotly loads late

            fallback = settings.journeys_path()
            base_model, base_how = _scenario_model(store, args.base, fallback)
            other_model, other_how = _scenario_model(store, args.scenario, fallback)
            write_compare_report(
                store,
                comparison,
                (base_model, other_model),
                diff_models(base_model, other_model),
                args.html,
                sources=(base_how, other_how),
            )
    if args.json:
        _print_json(comparison.as_dict())
    else:
        print(render_text(comparison))
    if args.html is not None:
        print(f"\nHTML report: {args.html}", file=sys.stderr if args.json else sys.stdout)
    return 0


# ---- scenarios -------------------------------------------------------------------------------------


def cmd_scenarios_list(args: argparse.Namespace) -> int:
    """touchpath scenarios list."""
    from streams.store.scenarios import list_scenarios  # noqa: PLC0415
    from streams.store.summary import render_table  # noqa: PLC0415

    with open_existing_store(settings_of(args)) as store:
        scenarios = list_scenarios(store)
    if args.json:
        _print_json([info.as_dict() for info in scenarios])
        return 0
    if not scenarios:
        print("no scenarios stored yet (touchpath run writes 'live'; touchpath replay writes others)")
        return 0
    rows = [
        (
            info.name,
            f"{info.events:,}",
            f"{info.customers:,}",
            f"{info.instances:,}",
            "" if info.conformant_pct is None else f"{info.conformant_pct}%",
            ", ".join(info.journeys),
            f"{info.replayed_at:%Y-%m-%d %H:%M}" if info.replayed_at else "",
            info.source,
        )
        for info in scenarios
    ]
    columns = [
        "scenario",
        "events",
        "customers",
        "instances",
        "conformant",
        "journeys",
        "replayed",
        "made by",
    ]
    print(render_table(columns, rows))
    return 0


def cmd_scenarios_drop(args: argparse.Namespace) -> int:
    """touchpath scenarios drop."""
    from streams.store.scenarios import drop_scenario  # noqa: PLC0415

    with open_existing_store(settings_of(args)) as store:
        tables = drop_scenario(store, args.name)
    print(f"dropped scenario '{args.name}' from {len(tables)} tables: {', '.join(tables)}")
    return 0


# ---- journeys diff ---------------------------------------------------------------------------------


def cmd_journeys_diff(args: argparse.Namespace) -> int:
    """touchpath journeys diff."""
    from projections.diff.journeys import diff_models, render_diff  # noqa: PLC0415
    from streams.common.definitions import load_journeys  # noqa: PLC0415

    old, new = load_journeys(args.old), load_journeys(args.new)
    diff = diff_models(old, new)
    if args.json:
        _print_json([change.as_dict() for change in diff.changes])
    else:
        print(f"--- {args.old}\n+++ {args.new}")
        print(render_diff(diff, old, new))
    return 0


# ---- bench replay ----------------------------------------------------------------------------------


def cmd_bench_replay(args: argparse.Namespace) -> int:
    """touchpath bench replay."""
    from streams.bench.replay import bench_replay  # noqa: PLC0415
    from streams.common.definitions import load_journeys  # noqa: PLC0415
    from streams.store.clickhouse import ClickHouseProjectionStore  # noqa: PLC0415

    settings = settings_of(args)
    model = load_journeys(settings.journeys_path())
    with tempfile.TemporaryDirectory(prefix="touchpath-bench-replay-") as tmp:
        store = ClickHouseProjectionStore.embedded(Path(tmp))
        try:
            store.create_schema()
            figures = bench_replay(
                store, model, args.events, workers=args.workers, engine_kind=settings.engine
            )
        finally:
            store.close()
    print_figures(figures, as_json=args.json)
    return 0


# ---- registration ----------------------------------------------------------------------------------


def register(groups: CommandGroups) -> None:
    """Add replay, compare, scenarios, journeys diff and bench replay to the CLI."""
    replay = groups.top.add_parser(
        "replay",
        help="re-run recorded history against (redesigned) journeys into a named scenario",
        description="Re-run the journey engine over recorded history — each customer's events in "
        "event-time order — with the given journey definitions, and write the results under "
        "scenario NAME (replacing what NAME held; 'live' is never written). From ClickHouse it "
        "reads touchpoint_events of the live scenario; from Kafka a time range of the touchpoints "
        "topic (no consumer group, stops at the end offsets seen at start). A replay never sends "
        "alerts: the ones it would have raised are recorded in the scenario only.",
    )
    replay.add_argument("--journeys", type=Path, required=True, help="journey definitions to replay with")
    replay.add_argument("--scenario", required=True, help="scenario name, e.g. checkout-v2 (not live)")
    replay.add_argument(
        "--from",
        dest="start",
        metavar="T",
        help="first event time, e.g. 2026-01-05 or RFC 3339 (default: the oldest event)",
    )
    replay.add_argument(
        "--to",
        dest="end",
        metavar="T",
        help="events before this time, exclusive (default: up to the newest event)",
    )
    replay.add_argument(
        "--source",
        choices=["clickhouse", "kafka"],
        default="clickhouse",
        help="where the recorded history is read: the live scenario's rows, or the touchpoints topic",
    )
    replay.add_argument("--workers", type=int, help="engine processes (default: one per core; 0: in-process)")
    replay.add_argument("--bootstrap", help="Kafka bootstrap servers (default: TOUCHPATH_KAFKA_BOOTSTRAP)")
    replay.add_argument("--topic", help="Kafka topic (default: TOUCHPATH_TOPIC_PREFIX + touchpoints)")
    replay.add_argument("--json", action="store_true", help="print the figures as JSON")
    _data_dir(replay)
    replay.set_defaults(handler=cmd_replay)

    compare = groups.top.add_parser(
        "compare",
        help="what a scenario says differently from another (e.g. live vs a replayed redesign)",
        description="Per persona and journey: conformance and mean fitness; deviations that appear or "
        "disappear by kind, step and touchpoint; friction by touchpoint; alerts; customers whose "
        "journey status or cost changes (counts and a sample with their paths); row-level identity. "
        "Replaying live history with the live definitions reports no differences.",
    )
    compare.add_argument("base", help="the scenario to compare against, usually live")
    compare.add_argument("scenario", help="the scenario to compare")
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON")
    compare.add_argument(
        "--html", type=Path, metavar="FILE", help="also write an offline HTML report (default: none)"
    )
    compare.add_argument("--sample", type=int, default=12, help="changed customers to show")
    compare.add_argument(
        "--journeys",
        type=Path,
        help="definitions of scenarios that were not replayed, e.g. live (default: TOUCHPATH_JOURNEYS)",
    )
    _data_dir(compare)
    compare.set_defaults(handler=cmd_compare)

    scenarios = groups.top.add_parser("scenarios", help="list or drop stored scenarios")
    scenarios_sub = scenarios.add_subparsers(dest="scenarios_command", required=True, metavar="ACTION")
    listing = scenarios_sub.add_parser("list", help="every stored scenario with its size and how it was made")
    listing.add_argument("--json", action="store_true", help="print the scenarios as JSON")
    _data_dir(listing)
    listing.set_defaults(handler=cmd_scenarios_list)
    drop = scenarios_sub.add_parser("drop", help="delete a scenario's rows from every table (never live)")
    drop.add_argument("name", help="the scenario to delete")
    _data_dir(drop)
    drop.set_defaults(handler=cmd_scenarios_drop)

    diff = groups.journeys.add_parser(
        "diff", help="what changed between two journey files (steps, optional, budgets, alternatives)"
    )
    diff.add_argument("old", type=Path, help="the journey file before")
    diff.add_argument("new", type=Path, help="the journey file after")
    diff.add_argument("--json", action="store_true", help="print the changes as JSON")
    diff.set_defaults(handler=cmd_journeys_diff)

    bench = groups.bench.add_parser(
        "replay", help="replay speed from ClickHouse on simulated history (events/s, end to end)"
    )
    bench.add_argument("--events", type=int, default=1_000_000, help="simulated events to record and replay")
    bench.add_argument("--workers", type=int, help="engine processes (default: one per core)")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    journeys_arg(bench)
    bench.set_defaults(handler=cmd_bench_replay)
