"""Native rows as Arrow: the record batches built from the core's column buffers equal the reference rows."""

from __future__ import annotations

import random

import pytest

from projections import schema
from projections.engine import JourneyEngine
from projections.intake import Intake
from projections.journeys import JourneyModel
from projections.native import native_available
from projections.native_engine import NativeEngine
from streams.sim.simulator import SimulationConfig, simulate
from streams.store.arrow_rows import decode, encode_rows, native_record_batch

pytestmark = pytest.mark.skipif(not native_available(), reason="the native extension is not built")

TABLES = {table.name: table for table in schema.TABLES}


@pytest.mark.parametrize("shuffle", [False, True])
def test_native_column_buffers_are_the_reference_rows_in_arrow(model: JourneyModel, shuffle: bool) -> None:
    """Every table's Arrow batch from drain_columns equals the reference rows encoded to Arrow."""
    lines = simulate(model, SimulationConfig(customers=150, days=20, seed=8)).lines
    if shuffle:
        random.Random(4).shuffle(lines)
    reference, native = JourneyEngine(model, "arrow"), NativeEngine(model, "arrow")
    records = list(enumerate(lines))
    tables_seen: set[str] = set()
    for start in range(0, len(records), 400):
        chunk = records[start : start + 400]
        Intake(reference).offer_batch(chunk, "t")
        Intake(native).offer_batch(chunk, "t")
        expected = reference.drain().rows
        batches = native.drain_columns()
        assert set(batches) == set(expected)
        for name, (count, columns) in batches.items():
            batch = native_record_batch(TABLES[name], count, columns)
            blob = encode_rows(TABLES[name], expected[name])
            assert blob is not None
            assert batch.to_pylist() == decode(blob).to_pylist()
            tables_seen.add(name)
    assert {"touchpoint_events", "journey_instances", "deviations", "friction_signals"} <= tables_seen
