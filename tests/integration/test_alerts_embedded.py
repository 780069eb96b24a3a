"""Friction spike alerts end to end on the embedded default: run -> alerts table -> a local webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from projections.engine import JourneyEngine
from projections.journeys import parse_definitions
from streams.alerting.delivery import RetryPolicy, WebhookDelivery
from streams.alerting.detection import EmbeddedAlerting, WouldBeAlertRecorder
from streams.cli.main import main
from streams.common.settings import example_journeys
from streams.embedded.runner import EmbeddedRunner, numbered_lines
from streams.store.clickhouse import ClickHouseProjectionStore
from tests.conftest import event_line

SPIKE = range(72, 78)  # 5-minute windows after T0 (six steady hours before, two calm hours after)


class Receiver:
    """A webhook on 127.0.0.1 that records every POST and answers with `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local webhook answering 200."""
    with Receiver() as running:
        yield running


def journeys_with_webhook(url: str) -> str:
    """The example journeys, with the ecommerce team's alerts going to `url`."""
    text = example_journeys().read_text()
    team = '- {id: ecommerce, description: "Web shop, cart and checkout"}'
    assert team in text
    return text.replace(team, f'- {{id: ecommerce, destinations: [{{webhook: "{url}"}}]}}')


def spike_input(path: Path, windows: range = range(96)) -> Path:
    """Eight hours of checkouts, six per window, rarely failing, with a half-hour failure spike."""
    lines = []
    for window in windows:
        for j in range(6):
            customer = f"c{window:03d}-{j}"
            at = window * 5 + j * 0.8
            failing = (j < 4) if window in SPIKE else (window * 6 + j) % 60 == 0
            lines.append((at - 3, event_line(f"{customer}-p", customer, "web.product_page", at - 3)))
            lines.append((at - 2, event_line(f"{customer}-c", customer, "web.cart", at - 2)))
            outcome = "failure" if failing else "success"
            lines.append((at, event_line(f"{customer}-k", customer, "web.checkout", at, outcome=outcome)))
    lines.sort(key=lambda item: item[0])
    path.write_bytes(b"\n".join(line for _, line in lines) + b"\n")
    return path


def _query(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    store = ClickHouseProjectionStore.embedded(data_dir)
    try:
        return store.query(sql)[1]
    finally:
        store.close()


def test_a_spike_gives_one_open_and_one_resolve_each_delivered_once_even_when_rerun(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    """One incident -> one open + one resolve row and one POST each; re-running sends and adds nothing."""
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(journeys_with_webhook(receiver.url))
    source = spike_input(tmp_path / "events.jsonl")
    data_dir = tmp_path / "data"
    args = ["run", "--input", str(source), "--data-dir", str(data_dir), "--journeys", str(journeys)]
    assert main(args) == 0
    assert "alerts: 1 incidents opened, 1 resolved" in capsys.readouterr().out
    alerts = _query(
        data_dir, "SELECT action, touchpoint, owner_team, alert_id FROM alerts FINAL ORDER BY detected_at"
    )
    assert [row[:3] for row in alerts] == [
        ("open", "web.checkout", "ecommerce"),
        ("resolve", "web.checkout", "ecommerce"),
    ]
    sent = [body["metadata"]["event_payload"] for body in receiver.bodies]
    assert [(item["action"], item["alert_id"]) for item in sent] == [(row[0], row[3]) for row in alerts]
    assert receiver.bodies[0]["text"].startswith(":rotating_light: Friction spike at web.checkout")
    assert sent[0]["kinds"]["failure"] >= 4
    assert _query(data_dir, "SELECT outcome, count() FROM alert_deliveries FINAL GROUP BY outcome") == [
        ("delivered", 2)
    ]

    assert main(args) == 0
    assert "alerts: 0 incidents opened" in capsys.readouterr().out
    assert len(receiver.bodies) == 2
    assert _query(data_dir, "SELECT count() FROM alerts FINAL") == [(2,)]
    assert _query(data_dir, "SELECT count() FROM alert_deliveries FINAL") == [(2,)]


def test_a_run_stopped_mid_incident_goes_on_without_a_duplicate(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    """Input split in the middle of the spike: the first run opens, the next one only resolves."""
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(journeys_with_webhook(receiver.url))
    data_dir = tmp_path / "data"
    common = ["--data-dir", str(data_dir), "--journeys", str(journeys)]
    first = spike_input(tmp_path / "first.jsonl", range(75))
    second = spike_input(tmp_path / "second.jsonl", range(75, 96))
    assert main(["run", "--input", str(first), *common]) == 0
    assert "alerts: 1 incidents opened, 0 resolved" in capsys.readouterr().out
    assert main(["run", "--input", str(second), *common]) == 0
    assert "alerts: 0 incidents opened, 1 resolved" in capsys.readouterr().out
    rows = _query(data_dir, "SELECT action, incident_id FROM alerts FINAL ORDER BY detected_at")
    assert [row[0] for row in rows] == ["open", "resolve"]
    assert rows[0][1] == rows[1][1]
    assert [body["metadata"]["event_payload"]["action"] for body in receiver.bodies] == ["open", "resolve"]


def test_a_failing_destination_is_retried_recorded_per_attempt_and_reported(tmp_path: Path) -> None:
    """A webhook answering 500 gets every retry; each attempt is a row and the run reports it failing."""
    with Receiver(status=500) as failing:
        model = parse_definitions(journeys_with_webhook(failing.url), "journeys.yaml")
        source = spike_input(tmp_path / "events.jsonl")
        store = ClickHouseProjectionStore.embedded(tmp_path / "data")
        try:
            store.create_schema()
            delivery = WebhookDelivery(RetryPolicy(attempts=3, first_delay=0.001, timeout=2.0))
            alerting = EmbeddedAlerting(model, delivery=delivery)
            runner = EmbeddedRunner(JourneyEngine(model), store, alerting=alerting)
            with source.open("rb") as handle:
                runner.feed(numbered_lines(handle), str(source))
            summary = alerting.finish(store, timeout=20)
            _, rows = store.query(
                "SELECT outcome, attempt, status_code FROM alert_deliveries FINAL ORDER BY alert_id, attempt"
            )
            alerts = store.scalar("SELECT count() FROM alerts FINAL")
        finally:
            store.close()
    assert alerts == 2
    assert len(failing.bodies) == 6
    assert sorted(rows) == sorted([("failed", 1, 500), ("failed", 2, 500), ("gave_up", 3, 500)] * 2)
    ((destination, error),) = summary.failed_destinations.items()
    assert destination.startswith("http://127.0.0.1:")
    assert "team ecommerce" in destination
    assert "gave_up" in error
    assert any(line.startswith("FAILING destination") for line in summary.lines())


def test_a_replayed_history_records_the_same_alerts_and_sends_nothing(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The replay hook records would-be alerts from stored rows under the scenario, without delivering."""
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(journeys_with_webhook(receiver.url))
    source = spike_input(tmp_path / "events.jsonl")
    data_dir = tmp_path / "data"
    common = ["--input", str(source), "--data-dir", str(data_dir), "--journeys", str(journeys)]
    assert main(["run", *common, "--alerts", "off"]) == 0
    assert _query(data_dir, "SELECT count() FROM alerts") == [(0,)]
    model = parse_definitions(journeys.read_text(), str(journeys))
    store = ClickHouseProjectionStore.embedded(data_dir)
    try:
        recorded = WouldBeAlertRecorder().record(store, model, "live")
        _, rows = store.query("SELECT action, touchpoint FROM alerts FINAL ORDER BY detected_at")
    finally:
        store.close()
    assert recorded == 2
    assert rows == [("open", "web.checkout"), ("resolve", "web.checkout")]
    assert receiver.bodies == []


def test_touchpath_replay_records_would_be_alerts_under_its_scenario_and_sends_nothing(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    """`touchpath replay` with the live journeys records the live incident again, as would-be alerts of
    its scenario; the live alerts stay as they were and the webhook gets nothing more."""
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(journeys_with_webhook(receiver.url))
    source = spike_input(tmp_path / "events.jsonl")
    data_dir = tmp_path / "data"
    common = ["--data-dir", str(data_dir), "--journeys", str(journeys)]
    assert main(["run", "--input", str(source), *common]) == 0
    assert len(receiver.bodies) == 2
    capsys.readouterr()
    assert main(["replay", "--scenario", "again", "--workers", "0", "--json", *common]) == 0
    assert json.loads(capsys.readouterr().out)["would_be_alerts"] == 2
    rows = _query(
        data_dir, "SELECT scenario, action, touchpoint FROM alerts FINAL ORDER BY scenario, detected_at"
    )
    assert rows == [
        ("again", "open", "web.checkout"),
        ("again", "resolve", "web.checkout"),
        ("live", "open", "web.checkout"),
        ("live", "resolve", "web.checkout"),
    ]
    assert len(receiver.bodies) == 2
