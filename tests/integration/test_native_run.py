"""`touchpath run` with TOUCHPATH_ENGINE=native: the same projections and kept states in chDB as the
Python engine, in one run or in two that continue each other's journeys."""

from __future__ import annotations

import random
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from projections import schema
from projections.journeys import JourneyModel
from projections.native import BUILD_HINT, native_available
from streams.cli.main import main
from streams.common.engines import EngineKind
from streams.common.settings import Settings
from streams.embedded.run import run_file
from streams.sim.simulator import SimulationConfig, simulate
from streams.store.clickhouse import ClickHouseProjectionStore
from tests.conftest import event_line

pytestmark = pytest.mark.skipif(not native_available(), reason="the native extension is not built")

PROJECTIONS = [table for table in schema.TABLES if table.name not in {"journey_state"}]
# What differs between one run and two by design: the input file's name and line numbers, and row
# versions (the first run's last drain times journeys out; the second run's events reopen them).
RUN_SPECIFIC = {"source", "position", "version"}


def _tables(
    store: ClickHouseProjectionStore, tables: list[schema.Table], skip: frozenset[str] = frozenset()
) -> dict[str, list[tuple[object, ...]]]:
    out = {}
    for table in tables:
        names = [name for name in table.column_names if name not in skip]
        columns = ", ".join(names)
        live = " WHERE is_deleted = 0" if "is_deleted" in table.column_names else ""
        _, rows = store.query(f"SELECT {columns} FROM {table.name} FINAL{live} ORDER BY {columns}")
        out[table.name] = rows
    return out


def test_native_run_stores_what_the_python_run_stores(
    model: JourneyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same input file, either engine: every table, journey_state included, holds the same rows."""
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
            stored[kind] = (replace(stats, rows_written=0), _tables(store, list(schema.TABLES)))
        finally:
            store.close()
    assert stored["native"] == stored["python"]
    assert stored["python"][1]["deviations"], "the simulated traffic deviates"
    assert stored["python"][1]["journey_state"], "both engines keep the journey states"


def test_two_runs_over_a_split_file_store_what_one_run_stores(model: JourneyModel, tmp_path: Path) -> None:
    """The input as two files, one run after the other (the second continues the first's journeys
    from the kept states), gives one run's projections: with either engine, and with the engine
    switched between the runs; the two-run data dirs are equal in every table, states included."""
    lines = simulate(model, SimulationConfig(customers=150, days=20, seed=23, bad_rate=0.01)).lines
    whole, first, second = (tmp_path / name for name in ("whole.jsonl", "part1.jsonl", "part2.jsonl"))
    whole.write_bytes(b"\n".join(lines) + b"\n")
    first.write_bytes(b"\n".join(lines[: len(lines) // 2]) + b"\n")
    second.write_bytes(b"\n".join(lines[len(lines) // 2 :]) + b"\n")
    runs: dict[tuple[EngineKind, ...], list[Path]] = {
        ("python",): [whole],
        ("native",): [whole],
        ("python", "python"): [first, second],
        ("native", "native"): [first, second],
        ("python", "native"): [first, second],
        ("native", "python"): [first, second],
    }
    one_run: dict[tuple[EngineKind, ...], object] = {}
    every_table: dict[tuple[EngineKind, ...], object] = {}
    for kinds, files in runs.items():
        data_dir = tmp_path / "-".join(kinds)
        for kind, path in zip(kinds, files, strict=True):
            store = ClickHouseProjectionStore.embedded(data_dir)
            try:
                store.create_schema()
                run_file(model, store, str(path), "live", engine_kind=kind)
            finally:
                store.close()
        store = ClickHouseProjectionStore.embedded(data_dir)
        try:
            one_run[kinds] = _tables(store, PROJECTIONS, frozenset(RUN_SPECIFIC))
            every_table[kinds] = _tables(store, list(schema.TABLES))
        finally:
            store.close()
    reference = one_run["python",]
    assert reference["journey_instances"], "journeys"
    assert reference["deviations"], "that deviate"
    assert reference["bad_events"], "and bad lines"
    for kinds, tables in one_run.items():
        assert tables == reference, kinds
    split = every_table["python", "python"]
    assert split["journey_state"]
    for kinds in (("native", "native"), ("python", "native"), ("native", "python")):
        assert every_table[kinds] == split, kinds


def test_without_the_extension_the_default_engine_says_how_to_build_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """TOUCHPATH_ENGINE unset runs the native core: when the extension does not load, `run` exits 1
    saying how to build it or how to choose the Python engine, which then runs the same file."""
    import projections

    monkeypatch.delenv("TOUCHPATH_ENGINE", raising=False)
    monkeypatch.delattr(projections, "_native", raising=False)
    monkeypatch.setitem(sys.modules, "projections._native", None)
    events = tmp_path / "events.jsonl"
    events.write_bytes(event_line("e1", "c1", "web.landing", 0) + b"\n")
    run = ["run", "--input", str(events), "--data-dir", str(tmp_path / "data"), "--alerts", "off"]
    assert main(run) == 1
    error = capsys.readouterr().err
    assert "the native engine is not available" in error
    assert BUILD_HINT in error
    assert "TOUCHPATH_ENGINE=python" in error
    monkeypatch.setenv("TOUCHPATH_ENGINE", "python")
    assert main(run) == 0
    assert "accepted 1" in capsys.readouterr().out
