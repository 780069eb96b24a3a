"""Benchmarks that print figures: Python and native engine throughput with and without chDB, state size."""

from __future__ import annotations

import gc
import os
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from projections import schema
from projections.engine import JourneyEngine
from projections.intake import Intake
from projections.journeys import JourneyModel
from projections.native_engine import NativeEngine
from projections.state_codec import encode_state
from streams.common.progress import Progress
from streams.embedded.runner import DRAIN_EVERY, EmbeddedRunner
from streams.sim.simulator import SimulationConfig, simulate
from streams.store.clickhouse import ClickHouseProjectionStore
from streams.store.columns import ColumnBatch
from streams.store.writer import BackgroundWriter


def simulated_lines(model: JourneyModel, events: int, seed: int = 11) -> list[bytes]:
    """At least `events` simulated lines (sized from a small pilot run)."""
    pilot = simulate(model, SimulationConfig(customers=500, seed=seed))
    per_customer = len(pilot.lines) / 500
    customers = int(events / per_customer * 1.02) + 1
    days = max(14, customers // 5000)
    lines = simulate(model, SimulationConfig(customers=customers, days=days, seed=seed)).lines
    return lines[:events]


def _run(
    engine: JourneyEngine | NativeEngine,
    lines: list[bytes],
    store: ClickHouseProjectionStore | None,
    *,
    arrow: bool = False,
) -> tuple[float, float]:
    """The runner's path (tuple rows unless arrow): wall and CPU seconds."""
    runner = EmbeddedRunner(engine, store, arrow=arrow)
    progress = Progress(f"bench {type(engine).__name__}", total=len(lines))
    gc.collect()
    started, cpu = time.perf_counter(), time.process_time()
    runner.feed(enumerate(lines, start=1), "bench", progress.update)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    progress.done()
    return elapsed, cpu


def _native_arrow(
    model: JourneyModel, lines: list[bytes], store: ClickHouseProjectionStore | None
) -> tuple[float, float]:
    """Native decode -> fold -> Arrow record batches per table (inserted when a store is given, on
    a writer thread while the next lines fold; batches that queue meanwhile go in one insert per
    table): wall and CPU seconds; no Python object per event or row on this path."""
    engine = NativeEngine(model, "bench")
    intake = Intake(engine)
    progress = Progress("bench native -> Arrow", total=len(lines))
    gc.collect()
    gc.freeze()
    started, cpu = time.perf_counter(), time.process_time()
    writer = None if store is None else BackgroundWriter(store)
    try:
        records = list(enumerate(lines, start=1))
        for start in range(0, len(records), DRAIN_EVERY):
            verdicts = intake.offer_batch(records[start : start + DRAIN_EVERY], "bench")
            batch = ColumnBatch.of_native(engine.drain_columns())
            for verdict in verdicts:
                if verdict.quarantine is not None:
                    batch.add(schema.BAD_EVENTS, verdict.quarantine)
            if writer is not None:
                writer.submit(batch)
            progress.update(min(len(records), start + DRAIN_EVERY))
    finally:
        if writer is not None:
            writer.close()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    progress.done()
    return elapsed, cpu


def _with_chdb(run: Callable[[ClickHouseProjectionStore], tuple[float, float]]) -> float:
    with tempfile.TemporaryDirectory(prefix="touchpath-bench-") as tmp:
        store = ClickHouseProjectionStore.embedded(Path(tmp))
        try:
            store.create_schema()
            return run(store)[0]
        finally:
            store.close()


def bench_engine(
    model: JourneyModel, events: int, engines: Sequence[str] = ("python", "native")
) -> dict[str, Any]:
    """Events/s of the Python reference and the native core side by side (alone and with chDB
    writes), their ratio, bytes of state per open journey, peak RSS and the load during the run."""
    lines = simulated_lines(model, events)
    n = len(lines)
    figures: dict[str, Any] = {"events": n}
    if "python" in engines:
        engine = JourneyEngine(model)
        wall, cpu = _run(engine, lines, None)
        figures["python_core_events_per_s"] = round(n / wall)
        figures["python_core_events_per_cpu_s"] = round(n / cpu)
        open_states = [state for state in engine.customers.values() if state.open_instance() is not None]
        encoded = sum(len(encode_state(state)) for state in open_states)
        figures["python_with_chdb_events_per_s"] = round(
            n / _with_chdb(lambda s: _run(JourneyEngine(model), lines, s))
        )
        figures["open_journeys_at_end"] = len(open_states)
        figures["state_bytes_per_open_journey_serialised"] = round(encoded / max(1, len(open_states)))
        figures["state_bytes_per_open_journey_python_heap"] = _heap_per_open_journey(model, lines[:200_000])
        # The reference's states (gigabytes at 1M events) are not kept alive while the native core
        # is measured.
        del engine, open_states
        gc.collect()
    if "native" in engines:
        wall, cpu = _native_arrow(model, lines, None)
        figures["native_arrow_events_per_s"] = round(n / wall)
        figures["native_arrow_events_per_cpu_s"] = round(n / cpu)
        native = NativeEngine(model)
        wall, _ = _run(native, lines, None)
        figures["native_tuple_rows_events_per_s"] = round(n / wall)  # JourneyEngine-compatible rows
        open_customers, encoded_bytes = native.open_state_bytes()
        del native
        figures["native_open_journeys_at_end"] = open_customers
        per_journey = encoded_bytes / max(1, open_customers)
        figures["native_state_bytes_per_open_journey_serialised"] = round(per_journey)
        every, own = _native_resident_per_open_journey(model, lines[:200_000])
        figures["native_state_bytes_per_open_journey_resident"] = every  # cf. python_heap
        figures["native_state_bytes_per_open_journey_resident_own"] = own  # cf. serialised
        figures["native_arrow_with_chdb_events_per_s"] = round(
            n / _with_chdb(lambda s: _native_arrow(model, lines, s))
        )
    if "python_core_events_per_cpu_s" in figures and "native_arrow_events_per_cpu_s" in figures:
        ratio = figures["native_arrow_events_per_cpu_s"] / figures["python_core_events_per_cpu_s"]
        figures["native_vs_python_core_ratio"] = round(ratio, 1)
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    figures["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    return figures


def _native_resident_per_open_journey(model: JourneyModel, lines: list[bytes]) -> tuple[int, int]:
    """Bytes the native states hold (counted from their allocations) per open journey: all
    customers' (as the Python heap figure), and those with an open journey alone (as the
    serialised figure)."""
    engine = NativeEngine(model)
    EmbeddedRunner(engine, None).feed(enumerate(lines, start=1), "bench")
    open_journeys = max(1, engine.open_instances())
    every = engine.resident_state_bytes()
    return round(every / open_journeys), round(engine.resident_state_bytes(open_only=True) / open_journeys)


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
