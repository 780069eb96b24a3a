"""`touchpath bench native`: the Python engine and the native core on the same events, with ratios."""

from __future__ import annotations

import argparse
from pathlib import Path

from streams.cli.common import CommandGroups, print_figures, settings_of


def cmd_bench_native(args: argparse.Namespace) -> int:
    """touchpath bench native."""
    from streams.common.definitions import load_journeys  # noqa: PLC0415 -- keeps `touchpath --help` light

    model = load_journeys(settings_of(args).journeys_path())
    from streams.bench.native import bench_native  # noqa: PLC0415 -- keeps `touchpath --help` light

    figures = bench_native(model, args.events)
    print_figures(figures, as_json=args.json)
    return 0


def register(groups: CommandGroups) -> None:
    """Add `bench native` to the CLI."""
    bench = groups.bench.add_parser(
        "native",
        help="decode+validate and alignment events per CPU-second: Python engine vs native core",
        description="Runs the same simulated events through the Python engine's decoder and "
        "alignment and through the native core (Rust), and prints events per CPU-second of each "
        "and their ratio. Needs the native extension (built by `pip install -e .`).",
    )
    bench.add_argument(
        "--events", type=int, default=200_000, help="simulated events to measure (default: %(default)s)"
    )
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.add_argument("--journeys", type=Path, help="journey definition file (default: the example)")
    bench.set_defaults(handler=cmd_bench_native)
