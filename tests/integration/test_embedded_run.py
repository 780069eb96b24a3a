"""The main job end to end on the embedded default: CLI -> engine -> chDB, idempotent, read-only SQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from projections.journeys import JourneyModel
from streams.cli.main import main
from streams.sim.simulator import SimulationConfig, simulate
from streams.store.clickhouse import ClickHouseProjectionStore

COUNTS = {
    "events": "SELECT count() FROM touchpoint_events FINAL",
    "instances": "SELECT count() FROM journey_instances FINAL",
    "deviations": "SELECT count() FROM deviations FINAL",
    "friction": "SELECT count() FROM friction_signals FINAL",
    "support": "SELECT count() FROM support_attribution FINAL",
    "bad": "SELECT count() FROM bad_events FINAL",
    "friction_rollup": "SELECT uniqExactMerge(signals) FROM friction_per_touchpoint_minute",
    "conformance_rollup": "SELECT uniqExactMerge(instances) FROM conformance_per_persona_day",
}


def _counts(data_dir: Path) -> dict[str, int]:
    store = ClickHouseProjectionStore.embedded(data_dir)
    try:
        return {name: int(store.scalar(sql)) for name, sql in COUNTS.items()}
    finally:
        store.close()


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory, model: JourneyModel) -> tuple[Path, int, int]:
    """A simulated input file with duplicates, late and corrupt lines; (path, lines, corrupt)."""
    simulation = simulate(model, SimulationConfig(customers=400, days=10, seed=9, bad_rate=0.01))
    path = tmp_path_factory.mktemp("input") / "events.jsonl"
    path.write_bytes(b"\n".join(simulation.lines) + b"\n")
    return path, len(simulation.lines), simulation.bad


def test_run_accounts_for_every_line_and_rerun_changes_nothing(
    simulated: tuple[Path, int, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """accepted + bad = lines read; running the same input again leaves every count unchanged."""
    path, lines, corrupt = simulated
    data_dir = tmp_path / "data"
    assert main(["run", "--input", str(path), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert f"lines read {lines:,} = accepted" in out
    assert "Conformance per persona and journey" in out
    first = _counts(data_dir)
    assert first["bad"] == corrupt > 0
    assert first["instances"] > 0
    assert first["deviations"] > 0
    assert first["support"] > 0
    assert main(["run", "--input", str(path), "--data-dir", str(data_dir)]) == 0
    assert _counts(data_dir) == first


def test_bad_lines_keep_their_line_number_reason_and_bytes(tmp_path: Path) -> None:
    """Quarantined lines can be found by line number with the typed reason and original bytes."""
    source = tmp_path / "mixed.jsonl"
    good = (
        b'{"event_id":"a","customer_id":"c","occurred_at":"2026-01-01T10:00:00Z",'
        b'"channel":"web","touchpoint":"web.product_page"}'
    )
    stranger = good.replace(b'"a"', b'"b"').replace(b"}", b',"persona":"vip_buyer"}')
    source.write_bytes(
        good + b"\n{broken\n" + good.replace(b"web.product_page", b"web.nowhere") + b"\n" + stranger + b"\n"
    )
    data_dir = tmp_path / "data"
    assert main(["run", "--input", str(source), "--data-dir", str(data_dir)]) == 0
    store = ClickHouseProjectionStore.embedded(data_dir)
    try:
        _, rows = store.query("SELECT position, reason, raw FROM bad_events FINAL ORDER BY position")
    finally:
        store.close()
    assert rows == [
        (2, "malformed_json", "{broken"),
        (3, "unknown_touchpoint", good.replace(b"web.product_page", b"web.nowhere").decode()),
        (4, "unknown_persona", stranger.decode()),
    ]


def test_sql_is_read_only_and_binds_parameters(
    simulated: tuple[Path, int, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Writes are refused with a clear message; {name:Type} parameters are bound by the server."""
    path, _, _ = simulated
    data_dir = tmp_path / "data"
    assert main(["run", "--input", str(path), "--data-dir", str(data_dir)]) == 0
    capsys.readouterr()
    sql = (
        "SELECT persona, count() AS n FROM journey_instances FINAL "
        "WHERE persona = {p:String} GROUP BY persona"
    )
    assert (
        main(["sql", "--data-dir", str(data_dir), "--format", "json", "--param", "p=store_shopper", sql]) == 0
    )
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["persona"] == "store_shopper"
    assert row["n"] > 0
    assert main(["sql", "--data-dir", str(data_dir), "DROP TABLE deviations"]) == 1
    assert "only read queries" in capsys.readouterr().err
    assert main(["sql", "--data-dir", str(data_dir), "SELECT * FROM file('/etc/hostname')"]) == 1
    assert "readonly" in capsys.readouterr().err.lower()


def test_journeys_check_reports_ok_or_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """journeys check prints each journey, or the file:line of each problem and exits 1."""
    from streams.common.settings import example_journeys

    assert main(["journeys", "check", str(example_journeys())]) == 0
    assert "business_buyer: b2b_contract@1" in capsys.readouterr().out
    broken = tmp_path / "broken.yaml"
    broken.write_text(example_journeys().read_text().replace("version: 1", "version: 0", 1))
    assert main(["journeys", "check", str(broken)]) == 1
    assert f"{broken}:" in capsys.readouterr().err


def test_a_second_file_continues_the_journeys_of_the_first(
    simulated: tuple[Path, int, int], tmp_path: Path
) -> None:
    """Running the input as two files, one after the other, gives what one run of it gives."""
    path, _, _ = simulated
    lines = path.read_bytes().splitlines()
    first, second = tmp_path / "part1.jsonl", tmp_path / "part2.jsonl"
    first.write_bytes(b"\n".join(lines[: len(lines) // 2]) + b"\n")
    second.write_bytes(b"\n".join(lines[len(lines) // 2 :]) + b"\n")
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(["run", "--input", str(path), "--data-dir", str(whole)]) == 0
    assert main(["run", "--input", str(first), "--data-dir", str(parts)]) == 0
    assert main(["run", "--input", str(second), "--data-dir", str(parts)]) == 0
    sql = (
        "SELECT instance_id, status, cost, path FROM journey_instances FINAL ORDER BY instance_id",
        "SELECT instance_id, idx, kind, step FROM deviations FINAL ORDER BY instance_id, idx",
        "SELECT instance_id, idx, kind, touchpoint FROM friction_signals FINAL ORDER BY instance_id, idx",
    )
    results = []
    for data_dir in (whole, parts):
        store = ClickHouseProjectionStore.embedded(data_dir)
        try:
            results.append([store.query(query)[1] for query in sql])
        finally:
            store.close()
    assert results[0] == results[1]
