"""`touchpath alerts list|test` and `touchpath bench alerts`: friction spike alerts from the command line."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from events.errors import TouchpathError
from streams.cli.common import data_dir_arg, journeys_arg, open_existing_store, settings_of

# Light at import: the parser of every command is built before any handler runs (streams.cli.main);
# handlers import the detector, the webhook delivery and the store when they run.

LIST_SQL = """SELECT a.detected_at AS detected_at, a.action AS action, a.touchpoint AS touchpoint,
       a.owner_team AS team, a.trigger AS trigger, a.window_start AS window_start,
       a.window_end AS window_end, a.signals AS signals, a.traffic AS traffic,
       round(100 * a.rate, 1) AS rate_pct, round(100 * a.baseline_rate, 1) AS baseline_pct,
       round(a.ratio, 1) AS ratio, round(a.sigma, 1) AS sigma, a.alert_id AS alert_id,
       ifNull(d.delivered, 0) AS delivered, ifNull(d.failed, 0) AS failed_attempts
FROM alerts AS a FINAL
LEFT JOIN (
    SELECT alert_id, countIf(outcome = 'delivered') AS delivered, countIf(outcome != 'delivered') AS failed
    FROM alert_deliveries WHERE scenario = {scenario:String} GROUP BY alert_id
) AS d ON d.alert_id = a.alert_id
WHERE a.scenario = {scenario:String}
  AND ({team:String} = '' OR a.owner_team = {team:String})
  AND ({touchpoint:String} = '' OR a.touchpoint = {touchpoint:String})
ORDER BY a.detected_at DESC, a.alert_id
LIMIT {limit:UInt32}"""


def register(groups: Any) -> None:
    """Add `alerts list`, `alerts test TEAM` and `bench alerts`."""
    alerts = groups.top.add_parser(
        "alerts",
        help="friction spike alerts: list them, or send a test alert to a team",
        description="Friction spike alerts are raised per touchpoint while `touchpath run` / `demo` "
        "process events, stored in the `alerts` table and sent to the webhooks of the team that owns "
        "the touchpoint (registry: teams[].destinations[].webhook).",
    )
    sub = alerts.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="the latest alerts, with their delivery status")
    data_dir_arg(listing)
    listing.add_argument("--scenario", default="live", help="the scenario whose alerts to list")
    listing.add_argument("--team", default="", help="only alerts routed to this team (default: every team)")
    listing.add_argument(
        "--touchpoint", default="", help="only alerts of this touchpoint (default: every touchpoint)"
    )
    listing.add_argument("--limit", type=int, default=50, help="at most this many alerts, newest first")
    listing.add_argument("--format", choices=["table", "json"], default="table", help="output format")
    listing.set_defaults(handler=cmd_alerts_list)

    test = sub.add_parser(
        "test",
        help="send a test alert to every destination of a team",
        description="Sends a clearly labelled test alert (Slack-compatible JSON) to each webhook of the "
        "team, with the usual retries, and prints every attempt. Exit code 1 if any destination did "
        "not accept it. Nothing is written to the data dir.",
    )
    test.add_argument("team", help="team id from the registry")
    journeys_arg(test)
    test.add_argument("--attempts", type=int, default=3, help="attempts per destination")
    test.set_defaults(handler=cmd_alerts_test)

    bench = groups.bench.add_parser(
        "alerts",
        help="alert detection on simulated incidents, and false alarms on control traffic",
        description="Simulates traffic with injected incidents (different touchpoints, sizes, durations "
        "and times of day) and control traffic without any, runs both through the engine and the "
        "detector, and prints incidents detected / injected, detection delay in windows, alerts per "
        "incident and false alarms. Asserts nothing.",
    )
    bench.add_argument("--customers", type=int, default=60_000, help="simulated customers")
    bench.add_argument("--days", type=int, default=7, help="simulated days")
    bench.add_argument("--seed", type=int, default=21, help="random seed")
    journeys_arg(bench)
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.set_defaults(handler=cmd_bench_alerts)


def cmd_alerts_list(args: argparse.Namespace) -> int:
    """touchpath alerts list."""
    from streams.store.summary import render_table  # noqa: PLC0415 -- light imports at the top

    parameters = {
        "scenario": args.scenario,
        "team": args.team,
        "touchpoint": args.touchpoint,
        "limit": args.limit,
    }
    with open_existing_store(settings_of(args)) as store:
        columns, rows = store.query(LIST_SQL, parameters)
    if args.format == "json":
        for row in rows:
            print(json.dumps(dict(zip(columns, row, strict=True)), default=str))
    elif rows:
        print(render_table(columns, rows))
    else:
        print(f"no alerts in scenario '{args.scenario}'")
    return 0


def cmd_alerts_test(args: argparse.Namespace) -> int:
    """touchpath alerts test TEAM."""
    import orjson  # noqa: PLC0415 -- light imports at the top

    from projections.alerts.model import test_alert  # noqa: PLC0415
    from projections.alerts.slack.message import slack_payload  # noqa: PLC0415
    from streams.alerting.delivery import (  # noqa: PLC0415
        DeliveryJob,
        Outcome,
        RetryPolicy,
        WebhookDelivery,
        redact_url,
    )
    from streams.common.definitions import load_journeys  # noqa: PLC0415

    model = load_journeys(settings_of(args).journeys_path())
    team = model.registry.team(args.team)
    if team is None:
        known = ", ".join(sorted(item.id for item in model.registry.teams))
        msg = f"no team '{args.team}' in the registry; teams: {known}"
        raise TouchpathError(msg)
    if not team.destinations:
        msg = (
            f"team '{team.id}' has no alert destination: add `destinations: [{{webhook: https://...}}]` "
            "to it in the registry"
        )
        raise TouchpathError(msg)
    touchpoint = next((tp.id for tp in model.registry.touchpoints if tp.owner == team.id), "(none)")
    alert = test_alert(touchpoint, team.id, int(time.time() * 1000))
    payload = orjson.dumps(slack_payload(alert, "test"))
    policy = RetryPolicy(attempts=max(1, args.attempts))
    delivery = WebhookDelivery(policy)
    for destination in team.destinations:
        delivery.submit(DeliveryJob(alert.alert_id, team.id, destination.webhook, payload))
    patience = sum(policy.delay(n) for n in range(1, policy.attempts)) + policy.attempts * policy.timeout
    delivery.close(patience + 1.0)
    delivered: set[str] = set()
    for attempt in delivery.take_attempts():
        where = redact_url(attempt.job.url)
        status = f" (HTTP {attempt.status_code})" if attempt.status_code is not None else ""
        detail = f": {attempt.error}" if attempt.error else ""
        print(f"attempt {attempt.attempt} -> {where}: {attempt.outcome.value}{status}{detail}")
        if attempt.outcome is Outcome.DELIVERED:
            delivered.add(attempt.job.url)
    missing = [destination for destination in team.destinations if destination.webhook not in delivered]
    print(
        f"test alert {alert.alert_id}: delivered to {len(delivered)} of {len(team.destinations)} "
        f"destination(s) of team {team.id}"
    )
    return 1 if missing else 0


def cmd_bench_alerts(args: argparse.Namespace) -> int:
    """touchpath bench alerts."""
    from streams.bench.alerts import bench_alerts, render  # noqa: PLC0415 -- only for this command
    from streams.common.definitions import load_journeys  # noqa: PLC0415

    model = load_journeys(settings_of(args).journeys_path())
    figures = bench_alerts(model, customers=args.customers, days=args.days, seed=args.seed)
    print(json.dumps(figures, indent=2) if args.json else render(figures))
    return 0
