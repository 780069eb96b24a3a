"""`touchpath demo`: simulated traffic with one injected incident, alerts to a local webhook, a report."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from events.registry import Destination
from projections.journeys import JourneyModel
from streams.alerting.detection import AlertMode, embedded_alerting
from streams.cli.common import open_store
from streams.common.definitions import load_journeys
from streams.common.settings import Settings
from streams.embedded.run import print_summary, run_file
from streams.reports.incidents import incident_rows
from streams.sim.simulator import DAY, HOUR, MINUTE, START, Incident, SimulationConfig, simulate, truth_lines
from streams.store.clickhouse import private_dir

if TYPE_CHECKING:
    from streams.store.clickhouse import ClickHouseProjectionStore

# The demo's 2,000 customers make about 8 product-page views an hour: too few for the shipped
# 5-minute alert windows (the detector wants >= 10 events and >= 4 signals in the judged windows
# and >= 100 events of baseline). The demo judges 30-minute windows instead and says so; the
# thresholds themselves stay those of the journey file (`touchpath bench alerts` measures the
# shipped settings at production-like volume).
DEMO_ALERT_WINDOW = 30 * MINUTE
INCIDENT_TOUCHPOINT = "web.product_page"  # the busiest touchpoint of the shipped example
INCIDENT_FAILURE_RATE = 0.8  # of views fail (base failure rate 1%)
INCIDENT_HOURS = 5
INCIDENT_AT = 16 * HOUR  # into the evening peak
WEBHOOK_LOG = "demo-webhook.jsonl"
DEMO_JOURNEYS = "demo-journeys.yaml"


def demo_incident(model: JourneyModel, days: int) -> Incident:
    """One friction incident at a busy touchpoint, four days before the end of the simulation."""
    touchpoint = INCIDENT_TOUCHPOINT
    if touchpoint not in model.channel_of:
        # Another journey file: the first step of the first journey is where most journeys start.
        touchpoint = model.journeys[0].steps[0].primary
    day = max(0, days - 4)
    return Incident(touchpoint, day * DAY + INCIDENT_AT, INCIDENT_HOURS * HOUR, INCIDENT_FAILURE_RATE)


class WebhookReceiver:
    """A local HTTP endpoint standing in for the teams' chat webhooks: answers 200 and keeps each
    body as one line of a file, so the demo's alert deliveries are real HTTP attempts."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.received = 0
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock, receiver.log_path.open("ab") as handle:
                    handle.write(body.replace(b"\n", b" ") + b"\n")
                    receiver.received += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the demo prints its own summary of what arrived."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/demo-webhook"
        self.thread = threading.Thread(target=self.server.serve_forever, name="demo-webhook", daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.log_path.unlink(missing_ok=True)
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()


def demo_model(model: JourneyModel, webhook: str) -> JourneyModel:
    """The journey model for the demo: teams without a destination post to the local receiver, and
    alerts are judged in windows of at least DEMO_ALERT_WINDOW (see above)."""
    teams = tuple(
        team
        if team.destinations
        else team.model_copy(update={"destinations": (Destination(webhook=webhook),)})
        for team in model.registry.teams
    )
    alerts = model.settings.alerts
    if alerts.window < DEMO_ALERT_WINDOW:
        alerts = alerts.model_copy(
            update={
                "window": DEMO_ALERT_WINDOW,
                "seasonal_span": max(alerts.seasonal_span, DEMO_ALERT_WINDOW),
                "lateness": max(alerts.lateness, DEMO_ALERT_WINDOW),
            }
        )
    return dataclasses.replace(
        model,
        registry=model.registry.model_copy(update={"teams": teams}),
        settings=model.settings.model_copy(update={"alerts": alerts}),
    )


def demo_journeys_text(text: str, window_ms: int) -> str | None:
    """The journey file as the demo ran it: the `window:` of its `alerts:` block set to the demo's
    window (None when the block has no such line). Replays of the demo's history should start from
    this file, or their would-be alerts are judged in other windows than live's and differ for that."""
    lines = text.splitlines(keepends=True)
    block_indent: int | None = None
    for number, line in enumerate(lines):
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if block_indent is None:
            if stripped.startswith("alerts:"):
                block_indent = indent
            continue
        if stripped and not stripped.startswith("#") and indent <= block_indent:
            return None  # the block ended without a window line
        if stripped.startswith("window:"):
            minutes = window_ms // MINUTE
            lines[number] = f"{line[:indent]}window: {minutes}m  # set by touchpath demo\n"
            return "".join(lines)
    return None


def incident_lines(store: ClickHouseProjectionStore) -> list[str]:
    """Every friction incident stored for live, this run's or an earlier one's (a second demo on the
    same data dir finds its events already processed and opens nothing new)."""
    incidents = incident_rows(store)
    if not incidents:
        return ["friction incidents in this data dir: none"]
    out = [f"friction incidents in this data dir: {len(incidents)}"]
    for item in incidents:
        state = f"resolved ({item['ended']:%H:%M} UTC)" if item["resolved"] else "still open"
        out.append(
            f"  {item['touchpoint']} (team {item['team']}): spike from {item['started']:%Y-%m-%d %H:%M} UTC, "
            f"{state}, peak {item['peak_ratio']:.0f}x the usual rate; {item['delivered']} webhook "
            f"deliveries, {item['failed']} failed attempts"
        )
    return out


def _when(offset_ms: int) -> str:
    return f"{START + timedelta(milliseconds=offset_ms):%Y-%m-%d %H:%M} UTC"


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Simulate, run with alerts delivered to the local receiver, summarise and write the report."""
    model = load_journeys(settings.journeys_path())
    private_dir(settings.data_dir)
    events_path = settings.data_dir / "demo-events.jsonl"
    truth_path = settings.data_dir / "demo-truth.jsonl"
    incident = demo_incident(model, args.days)
    print(f"[1/4] simulating {args.customers:,} customers over {args.days} days ...", file=sys.stderr)
    config = SimulationConfig(customers=args.customers, days=args.days, seed=args.seed, incidents=(incident,))
    simulation = simulate(model, config)
    events_path.write_bytes(b"\n".join(simulation.lines) + b"\n")
    truth_path.write_bytes(b"\n".join(truth_lines(simulation)) + b"\n")
    print(
        f"simulated {simulation.events:,} events of {args.customers:,} customers over {args.days} days "
        f"(+{simulation.duplicates} duplicates, {simulation.late} late, {simulation.bad} corrupt) "
        f"-> {events_path}"
    )
    print(
        f"injected incident: {incident.touchpoint} fails for {incident.failure_rate:.0%} of customers "
        f"from {_when(incident.start_ms)} to {_when(incident.start_ms + incident.duration_ms)} "
        f"(usually {config.base_failure_rate:.0%})"
    )
    with WebhookReceiver(settings.data_dir / WEBHOOK_LOG) as receiver:
        model = demo_model(model, receiver.url)
        window_ms = model.settings.alerts.window
        print(
            f"alerts: judged in {window_ms // MINUTE}-minute windows (the demo's traffic is too small for "
            f"shorter ones); teams without a webhook post to a local receiver at {receiver.url}"
        )
        ran_with = demo_journeys_text(settings.journeys_path().read_text(encoding="utf-8"), window_ms)
        ran_with_path = settings.data_dir / DEMO_JOURNEYS
        ran_with_path.unlink(missing_ok=True)
        if ran_with is not None:
            ran_with_path.write_text(ran_with, encoding="utf-8")
        if ran_with is not None and load_journeys(ran_with_path).settings.alerts != model.settings.alerts:
            ran_with_path.unlink()  # other alert settings of the file conflict: no file beats a wrong one
        elif ran_with is not None:
            print(
                f"journey definitions as the demo ran them: {settings.data_dir / DEMO_JOURNEYS} "
                "(start a redesign to replay from this file, so its alerts are judged alike)"
            )
        print("[2/4] running the events through the journey engine into chDB ...", file=sys.stderr)
        with open_store(settings) as store:
            alerting = embedded_alerting(model, store, "live", AlertMode.SEND)
            stats = run_file(model, store, str(events_path), alerting=alerting, engine_kind=settings.engine)
            print("[3/4] summarising ...", file=sys.stderr)
            print_summary(store, stats)
            if alerting is not None:
                print("\n" + "\n".join(alerting.finish(store).lines()))
            print(f"webhook: the local receiver got {receiver.received} alert(s) -> {receiver.log_path}")
            print("\n".join(incident_lines(store)))
            print("[4/4] writing the HTML report and the team digests ...", file=sys.stderr)
            from streams.reports.scenario import write_report  # noqa: PLC0415 -- plotly loads only for reports

            report = args.report or settings.data_dir / "report.html"
            write_report(store, model, report, scenario="live")
            from streams.cli.digest import write_team_digests  # noqa: PLC0415 -- only for the demo

            # The simulated weeks end `days` after the simulator's start; later events are second journeys.
            digest_dir = report.parent / "digests"
            digests = write_team_digests(store, model, digest_dir, end=START + timedelta(days=args.days))
    print(f"\nHTML report: {report}")
    print(f"team digests (the last simulated week): {len(digests)} in {digest_dir}")
    print(f"alerts: touchpath alerts list --data-dir {settings.data_dir}")
    return 0
