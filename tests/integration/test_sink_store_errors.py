"""While ClickHouse refuses inserts the worker says so on /health, retries, and loses nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from streams.store.clickhouse import ClickHouseProjectionStore
from streams.worker.app import WorkerMetrics, _write_until_done, worker_status
from streams.worker.sink import Delivered, ProjectionSink


def test_a_refused_insert_is_retried_and_reported_as_degraded_until_it_lands(tmp_path: Path) -> None:
    store = ClickHouseProjectionStore.embedded(tmp_path / "data")  # no schema yet: inserts fail
    metrics = WorkerMetrics()
    message = Delivered(
        "touchpoints.bad",
        0,
        7,
        b"{not json",
        {"reason": b"malformed_json", "source": b"touchpoints/0", "offset": b"7"},
    )
    seen: list[str] = []

    async def scenario() -> None:
        writing = asyncio.create_task(_write_until_done(ProjectionSink(store), [message], metrics))
        while metrics.store_error is None:
            await asyncio.sleep(0.05)
        seen.append(worker_status(metrics, rebalancing=False))
        store.create_schema()  # ClickHouse accepts again
        await asyncio.wait_for(writing, timeout=30)
        seen.append(worker_status(metrics, rebalancing=False))

    try:
        asyncio.run(scenario())
        rows = store.query("SELECT source, position, reason, raw FROM bad_events FINAL")[1]
    finally:
        store.close()
    assert seen == ["degraded", "ok"]
    assert metrics.sink_errors >= 1
    assert metrics.store_error is None
    assert rows == [("touchpoints/0", 7, "malformed_json", "{not json")]
