"""Far-future events: quarantined as future_timestamp, never moving other customers' journeys to abandoned."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from projections.engine import JourneyEngine
from projections.journeys import JourneyModel
from streams.cli.main import main
from streams.common.topics import TopicNames
from streams.embedded.runner import EmbeddedRunner
from streams.ingest.auth import RequestAuthenticator, signed_headers
from streams.ingest.http import EmbeddedSink, create_app
from streams.store.clickhouse import ClickHouseProjectionStore
from tests.integration.streaming import WorkerProcess, produce_lines

SECRET = "ingest-secret-0123456789"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _event(event_id: str, customer: str, touchpoint: str, at: datetime | str) -> bytes:
    stamp = at if isinstance(at, str) else at.isoformat()
    return orjson.dumps(
        {
            "event_id": event_id,
            "customer_id": customer,
            "occurred_at": stamp,
            "channel": touchpoint.split(".", 1)[0],
            "touchpoint": touchpoint,
            "persona": "online_buyer",
        }
    )


def _statuses(store: ClickHouseProjectionStore, customer: str) -> list[str]:
    _, rows = store.query(
        "SELECT status FROM journey_instances FINAL WHERE customer_id = {c:String} ORDER BY started_at",
        {"c": customer},
    )
    return [row[0] for row in rows]


def _post(client: TestClient, body: bytes) -> tuple[int, dict[str, object]]:
    headers = {
        "Content-Type": "application/x-ndjson",
        **signed_headers("shop", SECRET, body, int(NOW.timestamp())),
    }
    answer = client.post("/v1/events", content=body, headers=headers)
    return answer.status_code, answer.json()


def test_serve_quarantines_far_future_events_and_other_journeys_stay_open(
    model: JourneyModel, tmp_path: Path
) -> None:
    """One customer's events from next year (or 10 minutes ahead) never close another customer's journey."""
    store = ClickHouseProjectionStore.embedded(tmp_path / "data")
    store.create_schema()
    engine = JourneyEngine(model)
    sink = EmbeddedSink(engine, store)
    app = create_app(
        sink,
        RequestAuthenticator({"shop": SECRET.encode()}, clock=NOW.timestamp),
        registry=model.registry,
        clock=NOW.timestamp,
    )
    try:
        with TestClient(app) as client:
            status, _ = _post(client, _event("a1", "alice", "web.product_page", NOW - timedelta(hours=2)))
            assert status == 202
            assert _statuses(store, "alice") == ["in_progress"]
            for n, ahead in enumerate([timedelta(days=365), timedelta(minutes=10), timedelta(days=80_000)]):
                status, body = _post(client, _event(f"m{n}", "mallory", "web.landing", NOW + ahead))
                assert status == 400
                (error,) = body["errors"]  # type: ignore[misc]
                assert error["field"] == "occurred_at"
                assert error["reason"] in {"future_timestamp", "schema_violation"}  # 80,000 days: past 2200
            # Within the bound (clock skew) is fine.
            status, _ = _post(client, _event("m9", "mallory", "web.landing", NOW + timedelta(minutes=4)))
            assert status == 202
            assert engine.watermark <= (NOW + timedelta(minutes=5) - EPOCH) // timedelta(milliseconds=1)
            # Alice's journey is untouched and her next real event is taken, not refused as too_late.
            assert _statuses(store, "alice") == ["in_progress"]
            status, _ = _post(client, _event("a2", "alice", "web.cart", NOW - timedelta(hours=1)))
            assert status == 202
            assert _statuses(store, "alice") == ["in_progress"]
            _, rows = store.query("SELECT reason, count() FROM bad_events GROUP BY reason ORDER BY reason")
            assert dict(rows) == {"future_timestamp": 2, "schema_violation": 1}
    finally:
        sink.close()
        store.close()


def test_run_quarantines_events_after_not_after_and_says_what_none_does(model: JourneyModel) -> None:
    """A file run refuses lines later than --not-after; with none, such a line moves the run's own clock."""
    not_after_ms = (NOW - EPOCH) // timedelta(milliseconds=1)
    lines = [
        _event("a1", "alice", "web.product_page", NOW - timedelta(days=1)),
        _event("m1", "mallory", "web.landing", "2150-01-01T00:00:00Z"),
    ]
    guarded = EmbeddedRunner(JourneyEngine(model), None, not_after_ms=not_after_ms)
    stats = guarded.feed(enumerate(lines, start=1), "file")
    assert (stats.accepted, stats.bad) == (1, 1)
    (alice,) = [s for s in guarded.engine.customers.values() if s.customer_id == "alice"]
    assert alice.open_instance() is not None

    # The stated behaviour without a bound: the line is history the operator vouched for, and
    # it moves this run's watermark, so Alice's journey times out as abandoned.
    unguarded = EmbeddedRunner(JourneyEngine(model), None)
    stats = unguarded.feed(enumerate(lines, start=1), "file")
    assert (stats.accepted, stats.bad) == (2, 0)
    (alice,) = [s for s in unguarded.engine.customers.values() if s.customer_id == "alice"]
    assert alice.open_instance() is None


def test_cli_run_defaults_to_the_wall_clock(tmp_path: Path, model: JourneyModel) -> None:
    """`touchpath run` quarantines an event from 2150 by default; a past event of the same file is kept."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        _event("a1", "alice", "web.product_page", NOW)
        + b"\n"
        + _event("m1", "mallory", "web.landing", "2150-01-01T00:00:00Z")
        + b"\n"
    )
    data_dir = tmp_path / "data"
    assert main(["run", "--input", str(path), "--data-dir", str(data_dir), "--alerts", "off"]) == 0
    store = ClickHouseProjectionStore.embedded(data_dir)
    try:
        _, rows = store.query("SELECT reason, field FROM bad_events FINAL")
        assert rows == [("future_timestamp", "occurred_at")]
        assert _statuses(store, "alice") == ["in_progress"]
    finally:
        store.close()


@pytest.mark.kafka
def test_worker_quarantines_far_future_events_against_its_wall_clock(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Events produced straight to Kafka (not through ingest) meet the same bound in the worker."""
    now = datetime.now(tz=UTC)
    lines = [
        _event("a1", "alice", "web.product_page", now - timedelta(hours=2)),
        _event("m1", "mallory", "web.landing", now + timedelta(days=365)),
        _event("a2", "alice", "web.cart", now - timedelta(hours=1)),
    ]
    prefix = f"future{uuid.uuid4().hex[:8]}."
    produce_lines(kafka_bootstrap, TopicNames.with_prefix(prefix), lines)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path / "streamed")
    worker.start()
    try:
        health = worker.wait_idle(len(lines))
    finally:
        worker.stop()
    assert health["bad"] == 1
    store = ClickHouseProjectionStore.embedded(tmp_path / "streamed")
    try:
        _, rows = store.query("SELECT reason, field FROM bad_events FINAL")
        assert rows == [("future_timestamp", "occurred_at")]
        assert _statuses(store, "alice") == ["in_progress"]
    finally:
        store.close()
