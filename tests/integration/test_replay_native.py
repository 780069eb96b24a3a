"""`touchpath replay` with TOUCHPATH_ENGINE=native: every projection table of the replayed scenario
holds what a replay with the Python engine writes, in process and in worker processes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from projections import schema
from projections.journeys import JourneyModel, parse_definitions
from projections.native import native_available
from streams.cli.main import main
from streams.common.settings import example_journeys
from streams.replay.history import replay_from_clickhouse
from streams.sim.simulator import SimulationConfig, simulate
from streams.store.clickhouse import ClickHouseProjectionStore

pytestmark = pytest.mark.skipif(not native_available(), reason="the native extension is not built")

SCENARIO_TABLES = [table for table in schema.TABLES if "scenario" in table.column_names]
CHAT = '    - {id: support.chat, channel: support, owner: support, description: "Chat with support"}\n'


def _scenario_rows(store: ClickHouseProjectionStore, scenario: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table with a scenario column, for one scenario (that column left out)."""
    out = {}
    for table in SCENARIO_TABLES:
        columns = ", ".join(name for name in table.column_names if name != "scenario")
        _, rows = store.query(
            f"SELECT {columns} FROM {table.name} FINAL WHERE scenario = {{s:String}} ORDER BY {columns}",
            {"s": scenario},
        )
        out[table.name] = rows
    return out


def test_native_replay_writes_what_the_python_replay_writes(
    model: JourneyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recorded history (late, duplicate, shuffled, corrupt lines) replayed with a registry that
    dropped a touchpoint: both engines give the same rows in every table, quarantine included."""
    lines = simulate(model, SimulationConfig(customers=300, days=14, seed=31, bad_rate=0.01)).lines
    random.Random(7).shuffle(lines)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    data_dir = tmp_path / "data"
    monkeypatch.setenv("TOUCHPATH_ENGINE", "python")
    assert main(["run", "--input", str(events), "--data-dir", str(data_dir)]) == 0
    narrower = parse_definitions(example_journeys().read_text(encoding="utf-8").replace(CHAT, ""), "<test>")
    replays = {"python": ("python", 0), "native": ("native", 0), "native-workers": ("native", 1)}
    store = ClickHouseProjectionStore.embedded(data_dir)
    try:
        stats = {}
        for scenario, (kind, workers) in replays.items():
            replayed = replay_from_clickhouse(store, narrower, scenario, workers=workers, engine_kind=kind)
            stats[scenario] = (
                replayed.events,
                replayed.customers,
                replayed.quarantined,
                replayed.rows_written,
            )
        stored = {scenario: _scenario_rows(store, scenario) for scenario in replays}
    finally:
        store.close()
    reference = stored["python"]
    assert reference["journey_instances"], "the history has journeys"
    assert reference["deviations"], "that deviate"
    assert {row[2] for row in reference["bad_events"]} == {"unknown_touchpoint"}, "and a dropped touchpoint"
    for scenario in ("native", "native-workers"):
        assert stats[scenario] == stats["python"], scenario
        for table in SCENARIO_TABLES:
            assert stored[scenario][table.name] == reference[table.name], (scenario, table.name)


def test_the_replay_command_runs_the_engine_touchpath_engine_names(
    model: JourneyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`touchpath replay` under TOUCHPATH_ENGINE=native and =python: the two scenarios are equal."""
    lines = simulate(model, SimulationConfig(customers=80, days=7, seed=41)).lines
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    data_dir = str(tmp_path / "data")
    assert main(["run", "--input", str(events), "--data-dir", data_dir]) == 0
    for kind in ("python", "native"):
        monkeypatch.setenv("TOUCHPATH_ENGINE", kind)
        replay = ["replay", "--journeys", str(example_journeys()), "--scenario", f"by-{kind}"]
        assert main([*replay, "--data-dir", data_dir, "--workers", "0"]) == 0
    store = ClickHouseProjectionStore.embedded(Path(data_dir))
    try:
        python, native = _scenario_rows(store, "by-python"), _scenario_rows(store, "by-native")
    finally:
        store.close()
    assert python["journey_instances"]
    assert native == python
