"""`touchpath bench sql` on the command line; the measurement is in streams.bench.sql."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from streams.cli.common import print_figures, settings_of

if TYPE_CHECKING:
    from streams.cli.common import CommandGroups


def register(groups: CommandGroups) -> None:
    """Add `bench sql`."""
    bench = groups.bench.add_parser(
        "sql",
        help="ingest latency on `touchpath serve` with and without heavy SQL running (prints figures)",
        description="Starts `touchpath serve` on a throwaway data dir, posts signed batches and measures "
        "their latency, first alone, then while clients keep heavy scans running on GET /v1/sql.",
    )
    bench.add_argument("--requests", type=int, default=200, help="ingest requests per phase")
    bench.add_argument("--batch", type=int, default=50, help="events per request")
    bench.add_argument("--sql-clients", type=int, default=10, help="clients sending heavy SQL")
    bench.add_argument("--sql-timeout", type=int, default=5, help="max_execution_time of the SQL session, s")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.set_defaults(handler=cmd_bench_sql)


def cmd_bench_sql(args: argparse.Namespace) -> int:
    """touchpath bench sql."""
    from streams.bench.sql import bench_sql  # noqa: PLC0415
    from streams.common.definitions import load_journeys  # noqa: PLC0415 -- keeps `touchpath --help` light

    model = load_journeys(settings_of(args).journeys_path())
    figures = bench_sql(model, args.requests, args.batch, args.sql_clients, args.sql_timeout)
    print_figures(figures, as_json=args.json)
    return 0
