"""Replay speed from ClickHouse, end to end, on simulated history written straight to touchpoint_events."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import orjson

from events.model import EPOCH, ONE_MS
from projections import schema
from projections.journeys import JourneyModel
from streams.bench.engine import simulated_lines
from streams.common.engines import DEFAULT_ENGINE, EngineKind
from streams.common.progress import Progress
from streams.replay.history import replay_from_clickhouse
from streams.store import arrow_rows
from streams.store.clickhouse import ClickHouseProjectionStore
from streams.store.scenarios import write_settings

BATCH_EVENTS = 100_000  # simulated per batch: the simulator holds a whole simulation in memory


def _event_row(model: JourneyModel, body: dict[str, Any], prefix: str) -> tuple[object, ...] | None:
    """The live touchpoint_events row of one simulated event (None for the deliberately broken ones)."""
    try:
        occurred = datetime.fromisoformat(str(body["occurred_at"]).replace("Z", "+00:00"))
    except ValueError:
        return None
    survey = body.get("survey") or {}
    return (
        "live", body["event_id"], prefix + str(body["customer_id"]), (occurred - EPOCH) // ONE_MS,
        body["channel"], body["touchpoint"], model.owner_of.get(str(body["touchpoint"]), ""),
        body.get("persona"), body.get("outcome"), body.get("employee_id"), survey.get("kind"),
        survey.get("score"), survey.get("comment"), orjson.dumps(body.get("attributes") or {}).decode(),
        body.get("source"),
    )  # fmt: skip


def load_history(store: ClickHouseProjectionStore, model: JourneyModel, events: int) -> int:
    """Write about `events` simulated events as recorded live history; returns the rows written.

    Simulated in batches with their own seeds; customer ids get the batch as prefix so batches
    never merge customers.
    """
    progress = Progress("recording simulated history", total=events)
    written = read = batch = 0
    while read < events:
        lines = simulated_lines(model, min(BATCH_EVENTS, events - read), seed=11 + batch)
        rows = []
        for line in lines:
            try:
                row = _event_row(model, orjson.loads(line), f"b{batch:03d}-")
            except (orjson.JSONDecodeError, KeyError):
                row = None
            if row is not None:
                rows.append(row)
        encoded = arrow_rows.encode_rows(schema.TOUCHPOINT_EVENTS, rows)
        if encoded is not None and rows:
            data = arrow_rows.decode(encoded)
            arrow_rows.insert_arrow(store, schema.TOUCHPOINT_EVENTS, data, write_settings("bench"))
        written += len(rows)
        read += len(lines)
        batch += 1
        progress.update(read)
    progress.done()
    return written


def bench_replay(
    store: ClickHouseProjectionStore,
    model: JourneyModel,
    events: int,
    workers: int | None = None,
    engine_kind: EngineKind = DEFAULT_ENGINE,
) -> dict[str, Any]:
    """Record simulated history, then time one replay of it from ClickHouse (reading, engine, writing)."""
    load_history(store, model, events)
    stats = replay_from_clickhouse(
        store, model, "bench-replay", workers=workers, journeys_file="(bench)", engine_kind=engine_kind
    )
    cores = os.cpu_count() or 1
    cpu = stats.engine_cpu_s + stats.store_cpu_s
    return {
        "engine": engine_kind,
        "events": stats.events,
        "customers": stats.customers,
        "rows_written": stats.rows_written,
        "workers": stats.workers,
        "cores": cores,
        "seconds": round(stats.seconds, 2),
        "replay_events_per_s": round(stats.events_per_s),
        "engine_cpu_s": round(stats.engine_cpu_s, 2),
        "store_cpu_s": round(stats.store_cpu_s, 2),
        # An estimate, not a measurement: the speed if this CPU work had the cores to itself.
        "estimate_events_per_s_on_idle_cores": round(
            stats.events / max(cpu / min(cores, stats.workers + 1), 1e-9)
        ),
    }
