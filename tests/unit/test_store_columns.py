"""ColumnBatch: the native engine's Arrow rows read back as the Python engine's tuples."""

from __future__ import annotations

import random

import pytest

from projections import schema
from projections.alerts.config import detector_config
from projections.alerts.rows import (
    OBSERVED_COLUMNS,
    OBSERVED_TABLES,
    observations_of,
    observations_of_columns,
)
from projections.engine import JourneyEngine
from projections.intake import Intake
from projections.journeys import JourneyModel
from projections.native import native_available
from projections.native_engine import NativeEngine
from streams.sim.simulator import SimulationConfig, simulate
from streams.store.columns import ColumnBatch, columns_of, rows_of

pytestmark = pytest.mark.skipif(not native_available(), reason="the native extension is not built")


def test_arrow_batches_give_the_reference_rows_and_friction_observations(model: JourneyModel) -> None:
    """Every table of a native ColumnBatch reads back as the reference engine's tuples, and the
    friction detector observes the same things in it (from the columns it reads alone)."""
    lines = simulate(model, SimulationConfig(customers=150, days=20, seed=8)).lines
    random.Random(5).shuffle(lines)
    reference, native = JourneyEngine(model, "cols"), NativeEngine(model, "cols")
    config = detector_config(model)
    observed = 0
    records = list(enumerate(lines))
    for start in range(0, len(records), 500):
        chunk = records[start : start + 500]
        Intake(reference).offer_batch(chunk, "t")
        Intake(native).offer_batch(chunk, "t")
        expected = reference.drain()
        batch = ColumnBatch.of_native(native.drain_columns())
        for table in schema.TABLES:
            assert batch.table_rows(table) == expected.rows.get(table.name, []), table.name
        assert len(batch) == len(expected)
        observations = observations_of(rows_of(batch, OBSERVED_TABLES, OBSERVED_COLUMNS), config)
        assert observations == observations_of(expected.rows, config)
        # The bulk path (columns, no tuple per row) of either kind of batch observes the same.
        for source in (batch, expected):
            columns = columns_of(source, OBSERVED_TABLES, OBSERVED_COLUMNS)
            assert observations_of_columns(columns, config) == observations
            ruled = [observation for observation in observations if observation.touchpoint in config.rules]
            assert observations_of_columns(columns, config, ruled_only=True) == ruled
        observed += len(observations)
    assert observed > len(lines) // 2
