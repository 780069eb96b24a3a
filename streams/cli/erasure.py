"""`touchpath erase`: remove customers from every table, the data dir and SDK spools, with an audit row."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from streams.cli.common import data_dir_arg


def register(groups: Any) -> None:
    """Add `erase`."""
    erase = groups.top.add_parser(
        "erase",
        help="erase customers (right to be forgotten) from every table, the data dir and SDK spools",
        description="Removes each customer from every table (events, instances, deviations, friction, "
        "attribution, delight, journey state, quarantined lines), removes them from alert examples and "
        "the alert detector's state, rebuilds the rollups, purges their events from SDK spool "
        "directories (--spool; stop the client first), waits until ClickHouse has deleted the replaced "
        "parts from disk and records one audit row per customer (a SHA-256 of the id, when, what was "
        "removed). Embedded: then checks that no file under the data dir holds an id's bytes (exit code 1 "
        "if one does). With --kafka it first writes an erase record per customer to the input topic: the "
        "streaming worker forgets the customer's journey state when it reaches it (and marks it erased "
        "in its journey-events records); input and derived topics keep the events until their "
        "retention: see README 'Erasure'.",
    )
    erase.add_argument(
        "--customer", action="append", required=True, metavar="ID", help="a customer id (repeat for several)"
    )
    data_dir_arg(erase)
    erase.add_argument(
        "--spool",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="an SDK spool directory to purge (repeat for several; default: none)",
    )
    erase.add_argument(
        "--kafka",
        action="store_true",
        help="first tell the streaming workers (TOUCHPATH_KAFKA_BOOTSTRAP, TOUCHPATH_TOPIC_PREFIX, "
        "TOUCHPATH_APP_ID): an erase record per customer on the input topic, then wait until the "
        "worker's loader has stored past it before erasing the store",
    )
    erase.add_argument(
        "--kafka-wait",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long to wait for the loader to store past the erase records (ClickHouse server only; "
        "an embedded store's worker must be stopped, so it is not waited for; default 300)",
    )
    erase.add_argument("--json", action="store_true", help="print what was removed as JSON")
    erase.set_defaults(handler=cmd_erase)


def cmd_erase(args: argparse.Namespace) -> int:
    """touchpath erase."""
    from streams.cli.common import open_existing_store as open_store  # noqa: PLC0415
    from streams.cli.common import settings_of  # noqa: PLC0415
    from streams.common.topics import TopicNames  # noqa: PLC0415
    from streams.store.erasure import erase_customers, state_changelog  # noqa: PLC0415
    from streams.worker.control import loader_pending, send_erasures  # noqa: PLC0415

    settings = settings_of(args)
    embedded = not settings.clickhouse_url
    input_topic = TopicNames.with_prefix(settings.topic_prefix).touchpoints
    placed: list[tuple[int, int]] | None = None
    if args.kafka:
        # Kafka first: the erase record is ordered after the customer's events so far, so every row
        # they give is in a batch record before the one that forgets the customer.
        placed = send_erasures(settings.kafka_bootstrap, input_topic, sorted(set(args.customer)))
    pending: dict[int, int] = {}
    with open_store(settings) as store:
        if placed:
            # ... and the store last: rows the loader stores before it reaches the erase record are
            # then erased too. A server store is shared with the running worker: wait for it.
            wait = 0.0 if embedded else args.kafka_wait
            pending = loader_pending(store, settings.app_id, input_topic, placed, wait_s=wait)
        report = erase_customers(
            store,
            args.customer,
            spool_dirs=args.spool,
            data_dir=settings.data_dir if embedded else None,
            kafka=(settings.kafka_bootstrap, settings.app_id) if args.kafka else None,
        )
    tombstones = report.kafka_tombstones
    if args.json:
        print(json.dumps({
            "kafka_tombstones": tombstones, "kafka_erase_records": placed, "loader_pending": pending,
            "removed": report.removed, "scrubbed": report.scrubbed, "rollups_rebuilt": report.rebuilt,
            "spool_lines": report.spool_lines, "spool_files": report.spool_files,
            "checked_dir": report.checked_dir, "remaining_files": report.remaining_files,
            "remaining_rows": report.remaining_rows,
            "seconds": round(report.seconds, 1),
        }, indent=2))  # fmt: skip
    else:
        if args.kafka:
            print(f"kafka: no topic {input_topic}, no worker to tell" if placed is None
                  else f"kafka: {len(placed)} erase record(s) on {input_topic} at " + ", ".join(
                      f"{partition}/{offset}" for partition, offset in placed))  # fmt: skip
        if pending:
            where = ", ".join(str(partition) for partition in sorted(pending))
            print(f"kafka: the worker's loader has not stored the input up to the erase record on "
                  f"partition(s) {where}: rows of the customers' events before it may still be stored; "
                  "run the same erase (without --kafka) again once the worker has passed it")  # fmt: skip
        for digest, tables in report.removed.items():
            what = ", ".join(f"{table} {rows:,}" for table, rows in sorted(tables.items())) or "no rows"
            print(f"customer sha256:{digest[:16]}…: removed {what}")
        if report.scrubbed:
            print("rewritten without the ids: " + ", ".join(f"{t} {n}" for t, n in report.scrubbed.items()))
        if report.rebuilt:
            print("rollups rebuilt: " + ", ".join(report.rebuilt))
        if args.spool:
            print(f"spool: {report.spool_lines} lines removed from {report.spool_files} segment files")
        if report.checked_dir is not None:
            verdict = (
                "no file holds an erased id's bytes"
                if not report.remaining_files
                else "STILL IN: " + ", ".join(report.remaining_files)
            )
            print(f"checked every file under {report.checked_dir}: {verdict}")
            rows = ", ".join(f"{t} {n}" for t, n in report.remaining_rows.items())
            verdict = "none mentions an erased id" if not rows else "STILL IN: " + rows
            print(f"checked every stored row: {verdict}")
        if tombstones is not None:
            topic = state_changelog(settings.app_id)
            print(f"kafka: {len(tombstones)} tombstones written to {topic}" if tombstones
                  else f"kafka: no topic {topic}, no journey state to tombstone")  # fmt: skip
        print(f"audit: {len(report.removed)} row(s) in erasure_audit; took {report.seconds:.1f}s")
    if report.remaining_files or report.remaining_rows:
        return 1
    return 3 if pending else 0
