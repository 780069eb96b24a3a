"""`touchpath digest`: one owning team's (or every team's) digest as Markdown, HTML or a webhook message."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from events.errors import TouchpathError
from streams.cli.common import data_dir_arg, journeys_arg

if TYPE_CHECKING:
    from projections.journeys import JourneyModel
    from streams.reports.digest import TeamDigest
    from streams.store.clickhouse import ClickHouseProjectionStore

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def register(groups: Any) -> None:
    """Add `digest`."""
    digest = groups.top.add_parser(
        "digest",
        help="a team's digest: friction, support contacts, deviations, voice of the customer, celebrations",
        description="For one owning team (or --all), the period against the period before: its "
        "touchpoints ranked by friction per 1,000 events, the support contacts they caused, deviations at "
        "its steps, survey comments attributed to its touchpoints (worst first, with the customer's "
        "path), celebrations (positive surveys and the associates thanked) and alerts opened and "
        "resolved. Prints Markdown unless --html/--markdown name files; --send posts a compact version "
        "to the team's webhooks.",
    )
    who = digest.add_mutually_exclusive_group(required=True)
    who.add_argument("--team", help="the owning team (registry teams[].id); no default: give --team or --all")
    who.add_argument("--all", action="store_true", help="every team of the registry")
    digest.add_argument("--since", default="7d", help="period length before --until, e.g. 7d, 36h")
    digest.add_argument(
        "--until",
        help="end of the period (exclusive): a date (midnight UTC) or RFC 3339 time with offset; default: "
        "just after the scenario's last event",
    )
    digest.add_argument("--scenario", default="live", help="the scenario whose rows are read")
    digest.add_argument(
        "--html",
        type=Path,
        help="write the HTML digest here (with --all: a directory, one file per team); default: none",
    )
    digest.add_argument(
        "--markdown",
        type=Path,
        help="write the Markdown digest here (with --all: a directory); default: print it",
    )
    digest.add_argument("--send", action="store_true", help="post a compact digest to the team's webhooks")
    journeys_arg(digest)
    data_dir_arg(digest)
    digest.set_defaults(handler=cmd_digest)


def _period(store: ClickHouseProjectionStore, since: str, until: str | None, scenario: str) -> Any:
    from streams.replay.history import parse_time  # noqa: PLC0415
    from streams.reports.digest import latest_event_end, period_ending  # noqa: PLC0415 -- imports stay in handlers

    length = parse_since(since)
    if until is not None:
        end = EPOCH + timedelta(milliseconds=parse_time(until, "--until"))
    else:
        latest = latest_event_end(store, scenario)
        end = latest if latest is not None else datetime.now(UTC)
    return period_ending(end, length)


def parse_since(since: str) -> int:
    """--since as milliseconds; a bad duration says how to write one."""
    from projections.durations import parse_duration  # noqa: PLC0415
    from streams.reports.digest import DigestError  # noqa: PLC0415

    try:
        return parse_duration(since)
    except ValueError as error:
        raise DigestError(f"--since: {error}") from error


def _target(path: Path | None, team: str, suffix: str, many: bool) -> Path | None:
    if path is None:
        return None
    return path / f"digest-{team}.{suffix}" if many else path


def write_digest_files(digest: TeamDigest, html_path: Path | None, markdown_path: Path | None) -> None:
    """Write the digest's HTML and/or Markdown files (parents created)."""
    from streams.reports.digest_render import markdown, page  # noqa: PLC0415

    for path, text in ((html_path, page(digest) if html_path else ""), (markdown_path, markdown(digest))):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")


def team_digests(
    store: ClickHouseProjectionStore, model: JourneyModel, teams: list[str], period: Any, scenario: str
) -> list[TeamDigest]:
    """The digests of these teams for the period."""
    from streams.reports.digest import build_digest  # noqa: PLC0415

    return [build_digest(store, model, team, period, scenario) for team in teams]


def write_team_digests(
    store: ClickHouseProjectionStore,
    model: JourneyModel,
    directory: Path,
    *,
    end: datetime | None = None,
    scenario: str = "live",
    since: str = "7d",
) -> list[Path]:
    """Every team's digest of the `since` before end (default: the scenario's last event), as HTML and
    Markdown files in directory (what `touchpath demo` writes next to its report); returns the HTML paths."""
    from streams.reports.digest import period_ending, team_ids  # noqa: PLC0415

    period = _period(store, since, None, scenario) if end is None else period_ending(end, parse_since(since))
    written = []
    for digest in team_digests(store, model, team_ids(model), period, scenario):
        html_path = directory / f"digest-{digest.team}.html"
        write_digest_files(digest, html_path, directory / f"digest-{digest.team}.md")
        written.append(html_path)
    return written


def send_digest(digest: TeamDigest, model: JourneyModel, attempts: int = 3) -> tuple[int, int]:
    """Post the compact digest to every webhook of the team (like alerts: retries, Slack-compatible);
    prints each attempt; returns (delivered, destinations)."""
    import orjson  # noqa: PLC0415

    from streams.alerting.delivery import DeliveryJob, Outcome, RetryPolicy, WebhookDelivery, redact_url  # noqa: PLC0415
    from streams.reports.digest_render import slack_payload  # noqa: PLC0415

    team = model.registry.team(digest.team)
    destinations = team.destinations if team is not None else ()
    if not destinations:
        print(
            f"team {digest.team} has no webhook: add `destinations: [{{webhook: https://...}}]` to it in the "
            "registry to --send its digest",
            file=sys.stderr,
        )
        return 0, 0
    payload = orjson.dumps(slack_payload(digest))
    policy = RetryPolicy(attempts=max(1, attempts))
    delivery = WebhookDelivery(policy)
    for destination in destinations:
        delivery.submit(DeliveryJob(digest.digest_id, digest.team, destination.webhook, payload))
    patience = sum(policy.delay(n) for n in range(1, policy.attempts)) + policy.attempts * policy.timeout
    delivery.close(patience + 1.0)
    delivered: set[str] = set()
    for attempt in delivery.take_attempts():
        status = f" (HTTP {attempt.status_code})" if attempt.status_code is not None else ""
        detail = f": {attempt.error}" if attempt.error else ""
        print(
            f"digest {digest.team}: attempt {attempt.attempt} -> {redact_url(attempt.job.url)}: "
            f"{attempt.outcome.value}{status}{detail}",
            file=sys.stderr,
        )
        if attempt.outcome is Outcome.DELIVERED:
            delivered.add(attempt.job.url)
    return len(delivered), len(destinations)


def cmd_digest(args: argparse.Namespace) -> int:
    """touchpath digest."""
    from streams.cli.common import open_existing_store as open_store  # noqa: PLC0415
    from streams.cli.common import settings_of  # noqa: PLC0415
    from streams.common.definitions import load_journeys  # noqa: PLC0415
    from streams.reports.digest import team_ids  # noqa: PLC0415
    from streams.reports.digest_render import markdown  # noqa: PLC0415

    settings = settings_of(args)
    model = load_journeys(settings.journeys_path())
    teams = team_ids(model) if args.all else [args.team]
    if not args.all and model.registry.team(args.team) is None:
        known = ", ".join(team_ids(model))
        msg = f"no team '{args.team}' in the registry; teams: {known}"
        raise TouchpathError(msg)
    failed = 0
    with open_store(settings) as store:
        period = _period(store, args.since, args.until, args.scenario)
        digests = team_digests(store, model, teams, period, args.scenario)
    for digest in digests:
        html_path = _target(args.html, digest.team, "html", args.all)
        markdown_path = _target(args.markdown, digest.team, "md", args.all)
        write_digest_files(digest, html_path, markdown_path)
        for path in (html_path, markdown_path):
            if path is not None:
                print(f"digest of {digest.team}: {path}", file=sys.stderr)
        if html_path is None and markdown_path is None:
            print(markdown(digest))
        if args.send:
            delivered, destinations = send_digest(digest, model)
            if destinations and delivered < destinations:
                failed += 1
    return 1 if failed else 0
