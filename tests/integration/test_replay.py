"""Replay and compare end to end on chDB: determinism, a redesign against simulator truth, scenarios."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from projections.journeys import JourneyModel
from streams.cli.main import main
from streams.common.settings import example_journeys
from streams.sim.simulator import Simulation, SimulationConfig, simulate
from streams.store.clickhouse import ClickHouseProjectionStore
from streams.store.scenarios import scenario_tables

EXAMPLE = example_journeys().read_text(encoding="utf-8")
PER_SCENARIO = {
    "touchpoint_events": "SELECT count() FROM touchpoint_events WHERE scenario = {s:String}",
    "journey_instances": "SELECT count() FROM journey_instances WHERE scenario = {s:String}",
    "deviations": "SELECT count() FROM deviations WHERE scenario = {s:String}",
    "friction_signals": "SELECT count() FROM friction_signals WHERE scenario = {s:String}",
    "instances_final": "SELECT count() FROM journey_instances FINAL WHERE scenario = {s:String}",
}


@dataclass(frozen=True)
class History:
    """A live run of simulated traffic in a chDB data dir, and journey files to replay it with."""

    data_dir: Path
    live: Path
    redesign: Path
    simulation: Simulation


def redesign_text() -> str:
    """The example with online_purchase v2: the order confirmation e-mail is optional."""
    start, end = EXAMPLE.index("  - id: online_purchase"), EXAMPLE.index("  - id: store_purchase")
    block = EXAMPLE[start:end].replace("version: 1", "version: 2", 1)
    block = block.replace("touchpoint: email.order_confirmation, within: 10m}",
                          "touchpoint: email.order_confirmation, within: 10m, optional: true}")  # fmt: skip
    return EXAMPLE[:start] + block + EXAMPLE[end:]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, model: JourneyModel) -> History:
    """600 simulated customers over two weeks (late, duplicate and corrupt lines included), run live."""
    root = tmp_path_factory.mktemp("replay")
    simulation = simulate(model, SimulationConfig(customers=600, days=14, seed=21, bad_rate=0.002))
    events = root / "events.jsonl"
    events.write_bytes(b"\n".join(simulation.lines) + b"\n")
    live, redesign = root / "live.yaml", root / "redesign.yaml"
    live.write_text(EXAMPLE, encoding="utf-8")
    redesign.write_text(redesign_text(), encoding="utf-8")
    data_dir = root / "data"
    assert main(["run", "--input", str(events), "--data-dir", str(data_dir)]) == 0
    return History(data_dir, live, redesign, simulation)


def counts(data_dir: Path, scenario: str) -> dict[str, int]:
    store = ClickHouseProjectionStore.embedded(data_dir)
    try:
        return {name: int(store.scalar(sql, {"s": scenario})) for name, sql in PER_SCENARIO.items()}
    finally:
        store.close()


def compare_json(history: History, base: str, other: str, capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    capsys.readouterr()
    assert main(["compare", base, other, "--json", "--data-dir", str(history.data_dir)]) == 0
    result: dict = json.loads(capsys.readouterr().out)  # type: ignore[type-arg]
    return result


def test_replaying_live_history_with_live_journeys_reproduces_live(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same history + same definitions = the live projections exactly; re-running replaces, never adds."""
    replay = [
        "replay",
        "--journeys",
        str(history.live),
        "--scenario",
        "same",
        "--data-dir",
        str(history.data_dir),
    ]
    assert main([*replay, "--workers", "2"]) == 0  # through the worker processes
    assert "into scenario 'same'" in capsys.readouterr().out
    result = compare_json(history, "live", "same", capsys)
    assert result["differences"] == 0
    assert all(t["only_base"] == t["only_scenario"] == 0 for t in result["tables"])
    assert result["customers"]["customers"] == 600
    first = counts(history.data_dir, "same")
    assert first["instances_final"] == counts(history.data_dir, "live")["instances_final"] > 0

    assert main([*replay, "--workers", "0"]) == 0  # in-process this time, same rows
    assert counts(history.data_dir, "same") == first
    assert compare_json(history, "live", "same", capsys)["differences"] == 0


def test_making_a_step_optional_lifts_exactly_the_customers_who_skipped_it(
    history: History, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Optional confirmation: its missing_step deviations vanish and fitness rises for exactly the
    instances the simulator made skip it; nothing else about deviations changes."""
    skipped = {
        truth.instance_id
        for truth in history.simulation.truth
        if any(d["kind"] == "missing_step" and d["step"] == "confirmation" and d["observable"]
               for d in truth.deviations)
    }  # fmt: skip
    assert len(skipped) >= 5
    data_dir = str(history.data_dir)
    assert main(["replay", "--journeys", str(history.redesign), "--scenario", "confirm-optional",
                 "--data-dir", data_dir]) == 0  # fmt: skip
    result = compare_json(history, "live", "confirm-optional", capsys)
    changed = [d for d in result["deviations"] if d["base"] != d["scenario"]]
    assert [(d["kind"], d["step"], d["status"], d["base"], d["scenario"]) for d in changed] == [
        ("missing_step", "confirmation", "disappeared", len(skipped), 0)
    ]
    online = next(c for c in result["conformance"] if c["journey"] == "online_purchase")
    assert (online["base"]["versions"], online["scenario"]["versions"]) == ([1], [2])
    assert online["scenario"]["conformance_rate"] > online["base"]["conformance_rate"]
    assert result["customers"]["cost_down"] == len(skipped)
    assert result["customers"]["cost_up"] == result["customers"]["status_changed"] == 0

    store = ClickHouseProjectionStore.embedded(history.data_dir)
    try:
        _, rows = store.query(
            """SELECT b.instance_id FROM
                 (SELECT instance_id, fitness FROM journey_instances FINAL WHERE scenario = 'live') AS b
               INNER JOIN
                 (SELECT instance_id, fitness FROM journey_instances FINAL
                  WHERE scenario = 'confirm-optional') AS s ON b.instance_id = s.instance_id
               WHERE s.fitness > b.fitness"""
        )
    finally:
        store.close()
    assert {row[0] for row in rows} == skipped

    report = tmp_path / "compare.html"
    assert main(["compare", "live", "confirm-optional", "--html", str(report), "--data-dir", data_dir]) == 0
    page = report.read_text(encoding="utf-8")
    assert re.search(r"<script[^>]*\bsrc=", page) is None  # offline: plotly.js inlined once
    assert len(re.findall(r"plotly\.js v\d", page)) == 1
    assert "step &#x27;confirmation&#x27; is now optional" in page
    for section in (
        "Conformance per persona and journey",
        "Deviations per step",
        "Friction by touchpoint",
        "status transitions",
        "online_purchase@2",
        "web.checkout → email.csat_survey",
    ):
        assert section in page, section  # fmt: skip


def test_replay_reads_only_the_window_and_quarantines_what_the_new_registry_refuses(
    history: History, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--from/--to bound the replayed events; events of a touchpoint the new registry dropped are
    quarantined with their reason instead of silently vanishing."""
    narrower = tmp_path / "no-chat.yaml"
    chat = '    - {id: support.chat, channel: support, owner: support, description: "Chat with support"}\n'
    narrower.write_text(EXAMPLE.replace(chat, ""), encoding="utf-8")
    data_dir = str(history.data_dir)
    assert main(["replay", "--journeys", str(narrower), "--scenario", "week-2", "--from", "2026-01-12",
                 "--to", "2026-01-19T00:00:00Z", "--data-dir", data_dir, "--json"]) == 0  # fmt: skip
    stats = json.loads(capsys.readouterr().out)
    store = ClickHouseProjectionStore.embedded(history.data_dir)
    try:
        window = "occurred_at >= '2026-01-12 00:00:00' AND occurred_at < '2026-01-19 00:00:00'"
        live = store.scalar(
            f"SELECT count() FROM touchpoint_events FINAL WHERE scenario = 'live' AND {window}"
        )
        chats = store.scalar(
            f"SELECT count() FROM touchpoint_events FINAL WHERE scenario = 'live' AND {window} "
            "AND touchpoint = 'support.chat'"
        )
        kept = store.scalar("SELECT count() FROM touchpoint_events FINAL WHERE scenario = 'week-2'")
        _, bad = store.query(
            "SELECT reason, count() FROM bad_events FINAL WHERE scenario = 'week-2' GROUP BY reason"
        )
        outside = store.scalar(
            f"SELECT count() FROM journey_instances FINAL WHERE scenario = 'week-2' AND NOT ("
            f"{window.replace('occurred_at', 'started_at')})"
        )
    finally:
        store.close()
    assert chats > 0
    assert stats["events"] == live
    assert stats["quarantined"] == chats
    assert kept == live - chats
    assert bad == [("unknown_touchpoint", chats)]
    assert outside == 0


def test_scenarios_list_and_drop_and_what_is_refused(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenarios are listed with their origin; drop removes one from every table; live is protected."""
    data_dir = str(history.data_dir)
    assert (
        main(["replay", "--journeys", str(history.live), "--scenario", "scratch", "--data-dir", data_dir])
        == 0
    )
    capsys.readouterr()
    assert main(["scenarios", "list", "--json", "--data-dir", data_dir]) == 0
    listed = {row["scenario"]: row for row in json.loads(capsys.readouterr().out)}
    assert listed["live"]["source"] == "production"
    assert listed["scratch"]["source"].startswith("replay from clickhouse")
    assert listed["scratch"]["instances"] == listed["live"]["instances"]

    assert main(["scenarios", "drop", "live", "--data-dir", data_dir]) == 1
    assert "never replaced or dropped" in capsys.readouterr().err
    assert (
        main(["replay", "--journeys", str(history.live), "--scenario", "live", "--data-dir", data_dir]) == 1
    )
    assert "never replaced or dropped" in capsys.readouterr().err
    assert main(["scenarios", "drop", "Not A Name", "--data-dir", data_dir]) == 1
    assert "not a valid scenario name" in capsys.readouterr().err
    assert main(["scenarios", "drop", "never-made", "--data-dir", data_dir]) == 1
    assert "no scenario named 'never-made'" in capsys.readouterr().err
    assert main(["compare", "live", "never-made", "--data-dir", data_dir]) == 1

    assert main(["scenarios", "drop", "scratch", "--data-dir", data_dir]) == 0
    store = ClickHouseProjectionStore.embedded(history.data_dir)
    try:
        left = {
            table: int(store.scalar(f"SELECT count() FROM {table} WHERE scenario = 'scratch'"))
            for table in scenario_tables(store)
        }
        live_rows = int(store.scalar("SELECT count() FROM journey_instances WHERE scenario = 'live'"))
    finally:
        store.close()
    assert {"friction_per_touchpoint_minute", "conformance_per_persona_day", "scenario_runs"} <= set(left)
    assert set(left.values()) == {0}
    assert live_rows > 0


def test_bench_replay_prints_the_replay_speed(capsys: pytest.CaptureFixture[str]) -> None:
    """`touchpath bench replay` records simulated history and prints events/s of one replay."""
    assert main(["bench", "replay", "--events", "3000", "--workers", "0", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["events"] >= 2900
    assert figures["replay_events_per_s"] > 0


def test_row_identity_counts_real_changes_not_the_new_journey_version(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    """A redesign bumps journey_version on every row of its journey; the identity table counts only the
    rows whose content changed, and names the columns: cost where an alignment changed, fitness where
    the shortest ideal path changed length."""
    data_dir = str(history.data_dir)
    assert main(["replay", "--journeys", str(history.redesign), "--scenario", "identity-check",
                 "--data-dir", data_dir]) == 0  # fmt: skip
    result = compare_json(history, "live", "identity-check", capsys)
    tables = {t["table"]: t for t in result["tables"]}
    instances = tables["journey_instances"]
    online = next(c for c in result["conformance"] if c["journey"] == "online_purchase")
    assert 0 < instances["only_base"] < online["base"]["instances"]
    assert set(instances["columns"]) <= {"cost", "fitness", "deviation_count"}
    assert instances["columns"]["cost"] == result["customers"]["cost_down"]
    assert tables["touchpoint_events"]["only_base"] == tables["touchpoint_events"]["only_scenario"] == 0
