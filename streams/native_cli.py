"""`touchpath bench native`: the Python engine and the native core on the same events, with ratios."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from streams.cli_common import CommandGroups


def cmd_bench_native(args: argparse.Namespace) -> int:
    """touchpath bench native."""
    from streams.definitions import load_journeys  # noqa: PLC0415 -- keeps `touchpath --help` light
    from streams.settings import Settings  # noqa: PLC0415

    overrides = {"journeys": args.journeys} if args.journeys is not None else {}
    model = load_journeys(Settings().model_copy(update=overrides).journeys_path())
    from streams.native_bench import bench_native  # noqa: PLC0415 -- keeps `touchpath --help` light

    figures = bench_native(model, args.events)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:48s} {value:,}" if isinstance(value, int | float) else f"{key:48s} {value}")
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
