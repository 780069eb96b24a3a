"""While ClickHouse refuses inserts the worker says so on /health, retries, and loses nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from events.errors import BadReason, Rejection
from projections import schema
from projections.intake import quarantine_row
from streams.store.clickhouse import ClickHouseProjectionStore
from streams.worker.app import WorkerMetrics, worker_status
from streams.worker.loader import Loader
from streams.worker.records import Kind, Record, encode


def test_a_refused_insert_is_retried_and_reported_as_degraded_until_it_lands(tmp_path: Path) -> None:
    store = ClickHouseProjectionStore.embedded(tmp_path / "data")  # no schema yet: inserts fail
    loader = Loader(store, bootstrap="unused", topic="je", input_topic="tp", consumer_id="t", partitions=1)
    metrics = WorkerMetrics(loader=loader.counters)
    metrics.health.partitions_assigned(1)  # a worker past its start: only the store decides
    metrics.health.state_recovered()
    row = quarantine_row("live", "touchpoints/0", 7, Rejection(BadReason.MALFORMED_JSON, "EOF"), b"{not json")
    record = Record(Kind.BATCH, 0, 7, 8, rows={schema.BAD_EVENTS.name: [row]})
    seen: list[str] = []
    writing = threading.Thread(target=loader.load, args=([(0, 0, encode(record), 0)],))
    try:
        writing.start()
        while metrics.store_error is None:
            time.sleep(0.05)
        seen.append(worker_status(metrics, rebalancing=False))
        store.create_schema()  # ClickHouse accepts again
        writing.join(timeout=30)
        seen.append(worker_status(metrics, rebalancing=False))
        rows = store.query("SELECT source, position, reason, raw FROM bad_events FINAL")[1]
    finally:
        store.close()
    assert seen == ["degraded", "ok"]
    assert metrics.sink_errors >= 1
    assert metrics.store_error is None
    assert rows == [("touchpoints/0", 7, "malformed_json", "{not json")]
