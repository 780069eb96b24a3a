"""`touchpath run` with TOUCHPATH_ENGINE=native: the same projections in chDB as the Python engine."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

from events.errors import TouchpathError
from projections import schema
from projections.journeys import JourneyModel
from projections.native import native_available
from streams.common.settings import Settings
from streams.embedded.run import run_file
from streams.sim.simulator import SimulationConfig, simulate
from streams.store.clickhouse import ClickHouseProjectionStore

pytestmark = pytest.mark.skipif(not native_available(), reason="the native extension is not built")

PROJECTIONS = [table for table in schema.TABLES if table.name not in {"journey_state"}]


def _tables(store: ClickHouseProjectionStore) -> dict[str, list[tuple[object, ...]]]:
    out = {}
    for table in PROJECTIONS:
        columns = ", ".join(table.column_names)
        _, rows = store.query(f"SELECT {columns} FROM {table.name} FINAL ORDER BY {columns}")
        out[table.name] = rows
    return out


def test_native_run_stores_what_the_python_run_stores(
    model: JourneyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same input file, either engine: every projection table holds the same rows; a native run
    refuses to continue a scenario whose journeys the Python engine kept."""
    lines = simulate(model, SimulationConfig(customers=150, days=20, seed=17)).lines
    random.Random(5).shuffle(lines)
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    monkeypatch.setenv("TOUCHPATH_ENGINE", "native")
    assert Settings().engine == "native"
    stored = {}
    for kind in ("python", "native"):
        store = ClickHouseProjectionStore.embedded(tmp_path / kind)
        try:
            store.create_schema()
            stats = run_file(model, store, str(source), "live", engine_kind=kind)
            # journey_state rows are the Python engine's alone: every other count must agree.
            stored[kind] = (replace(stats, rows_written=0), _tables(store))
            if kind == "python":
                with pytest.raises(TouchpathError, match="journey states kept by earlier runs"):
                    run_file(model, store, str(source), "live", engine_kind="native")
        finally:
            store.close()
    assert stored["native"] == stored["python"]
    assert stored["python"][1]["deviations"], "the simulated traffic deviates"
