"""Benchmarks that print figures: engine throughput with and without chDB, state size per journey."""

from __future__ import annotations

import gc
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from projections.engine import JourneyEngine
from projections.journeys import JourneyModel
from projections.state_codec import encode_state
from streams.common.progress import Progress
from streams.embedded.runner import EmbeddedRunner
from streams.sim.simulator import SimulationConfig, simulate
from streams.store.clickhouse import ClickHouseProjectionStore


def simulated_lines(model: JourneyModel, events: int, seed: int = 11) -> list[bytes]:
    """At least `events` simulated lines (sized from a small pilot run)."""
    pilot = simulate(model, SimulationConfig(customers=500, seed=seed))
    per_customer = len(pilot.lines) / 500
    customers = int(events / per_customer * 1.02) + 1
    days = max(14, customers // 5000)
    lines = simulate(model, SimulationConfig(customers=customers, days=days, seed=seed)).lines
    return lines[:events]


def _run(
    model: JourneyModel, lines: list[bytes], store: ClickHouseProjectionStore | None
) -> tuple[float, JourneyEngine]:
    engine = JourneyEngine(model)
    runner = EmbeddedRunner(engine, store)
    progress = Progress("bench", total=len(lines))
    gc.collect()
    started = time.perf_counter()
    runner.feed(enumerate(lines, start=1), "bench", progress.update)
    elapsed = time.perf_counter() - started
    progress.done()
    return elapsed, engine


def bench_engine(model: JourneyModel, events: int) -> dict[str, Any]:
    """Events/s of the core pipeline alone and with chDB writes; bytes of state per open journey."""
    lines = simulated_lines(model, events)
    core_s, engine = _run(model, lines, None)
    open_states = [state for state in engine.customers.values() if state.open_instance() is not None]
    encoded = sum(len(encode_state(state)) for state in open_states)
    with tempfile.TemporaryDirectory(prefix="touchpath-bench-") as tmp:
        store = ClickHouseProjectionStore.embedded(Path(tmp))
        try:
            store.create_schema()
            full_s, _ = _run(model, lines, store)
        finally:
            store.close()
    heap = _heap_per_open_journey(model, lines[: min(len(lines), 200_000)])
    return {
        "events": len(lines),
        "core_events_per_s": round(len(lines) / core_s),
        "with_chdb_events_per_s": round(len(lines) / full_s),
        "open_journeys_at_end": len(open_states),
        "state_bytes_per_open_journey_serialised": round(encoded / max(1, len(open_states))),
        "state_bytes_per_open_journey_python_heap": heap,
    }


def _heap_per_open_journey(model: JourneyModel, lines: list[bytes]) -> int:
    engine = JourneyEngine(model)
    runner = EmbeddedRunner(engine, None)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    runner.feed(enumerate(lines, start=1), "bench")
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    open_journeys = max(1, engine.open_instances())
    retained_states = after - before
    return round(retained_states / open_journeys)
