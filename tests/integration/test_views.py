"""Analyst views: each equals a computation over the base tables' FINAL rows, scenario by scenario."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from projections.journeys import JourneyModel
from projections.views import VIEWS, t_975
from streams.cli.main import main
from streams.common.settings import example_journeys
from streams.sim.simulator import SimulationConfig, simulate
from streams.store.clickhouse import ClickHouseProjectionStore

SCENARIOS = ("live", "v2")
EXAMPLE = example_journeys().read_text(encoding="utf-8")


def _redesign() -> str:
    """online_purchase v2: the confirmation e-mail is optional (so the second scenario differs)."""
    start, end = EXAMPLE.index("  - id: online_purchase"), EXAMPLE.index("  - id: store_purchase")
    block = EXAMPLE[start:end].replace("version: 1", "version: 2", 1)
    block = block.replace(
        "touchpoint: email.order_confirmation, within: 10m}",
        "touchpoint: email.order_confirmation, within: 10m, optional: true}",
    )
    return EXAMPLE[:start] + block + EXAMPLE[end:]


@pytest.fixture(scope="module")
def store(
    tmp_path_factory: pytest.TempPathFactory, model: JourneyModel
) -> Iterator[ClickHouseProjectionStore]:
    """Simulated traffic run live in two runs (the first 60% of the lines, then all of them again:
    journeys go on, so rows get new versions and retractions, and the bad lines come twice), then
    replayed as scenario v2."""
    root = tmp_path_factory.mktemp("views")
    simulation = simulate(model, SimulationConfig(customers=400, days=14, seed=21, bad_rate=0.004))
    events = root / "events.jsonl"
    redesign = root / "redesign.yaml"
    redesign.write_text(_redesign(), encoding="utf-8")
    data_dir = root / "data"
    for lines in (simulation.lines[: len(simulation.lines) * 6 // 10], simulation.lines):
        events.write_bytes(b"\n".join(lines) + b"\n")  # the same source name: bad lines repeat
        assert main(["run", "--input", str(events), "--data-dir", str(data_dir), "--alerts", "off"]) == 0
    assert main(["replay", "--journeys", str(redesign), "--scenario", "v2", "--data-dir", str(data_dir)]) == 0
    opened = ClickHouseProjectionStore.embedded(data_dir)
    try:
        yield opened
    finally:
        opened.close()


def _view(store: ClickHouseProjectionStore, name: str, scenario: str) -> list[dict[str, Any]]:
    columns, rows = store.query(f"SELECT * FROM {name}(scenario={{s:String}})", {"s": scenario})
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _base(store: ClickHouseProjectionStore, table: str, columns: str, scenario: str) -> list[tuple[Any, ...]]:
    _, rows = store.query(
        f"SELECT {columns} FROM {table} FINAL WHERE scenario = {{s:String}}", {"s": scenario}
    )
    return rows


def _keyed(rows: list[dict[str, Any]], key: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
    out = {tuple(row[name] for name in key): row for row in rows}
    assert len(out) == len(rows), "a view returned the same key twice"
    return out


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def test_the_fixture_has_two_different_scenarios_and_superseded_rows(
    store: ClickHouseProjectionStore,
) -> None:
    """What makes the comparisons below meaningful: rows FINAL hides, and scenarios that differ."""
    raw = store.scalar("SELECT count() FROM journey_instances WHERE scenario = 'live'")
    final = store.scalar("SELECT count() FROM journey_instances FINAL WHERE scenario = 'live'")
    assert raw > final > 0
    bad_raw = store.scalar("SELECT count() FROM bad_events WHERE scenario = 'live'")
    bad_final = store.scalar("SELECT count() FROM bad_events FINAL WHERE scenario = 'live'")
    assert bad_raw > bad_final > 0  # the re-sent lines were quarantined again
    versions = {
        scenario: {
            row["journey_version"]
            for row in _view(store, "conformance_by_persona", scenario)
            if row["journey_id"] == "online_purchase"
        }
        for scenario in SCENARIOS
    }
    assert versions == {"live": {1}, "v2": {2}}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_conformance_views_equal_the_instances(store: ClickHouseProjectionStore, scenario: str) -> None:
    """conformance_by_persona(_day) count every latest instance, open ones included."""
    rows = _base(
        store,
        "journey_instances",
        "persona, journey_id, journey_version, status, ended_at, cost, fitness, toDate(started_at)",
        scenario,
    )
    groups: dict[tuple[Any, ...], list[tuple[Any, ...]]] = defaultdict(list)
    days: dict[tuple[Any, ...], list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        groups[row[:3]].append(row)
        days[(*row[:3], row[7])].append(row)

    def counts(members: list[tuple[Any, ...]]) -> dict[str, int]:
        return {
            "instances": len(members),
            "completed": sum(1 for m in members if m[3] == "completed"),
            "abandoned": sum(1 for m in members if m[3] == "abandoned"),
            "in_progress": sum(1 for m in members if m[3] == "in_progress"),
            "closed": sum(1 for m in members if m[4] is not None),
            "conformant": sum(1 for m in members if m[5] == 0),
        }

    view = _keyed(
        _view(store, "conformance_by_persona", scenario), ("persona", "journey_id", "journey_version")
    )
    assert set(view) == set(groups)
    for key, members in groups.items():
        got = view[key]
        assert {name: got[name] for name in counts(members)} == counts(members)
        assert got["conformance_rate"] == pytest.approx(
            counts(members)["conformant"] / len(members), abs=1e-4
        )
        assert got["mean_fitness"] == pytest.approx(sum(m[6] for m in members) / len(members), abs=1e-4)
    by_day = _keyed(
        _view(store, "conformance_by_persona_day", scenario),
        ("persona", "journey_id", "journey_version", "day"),
    )
    assert {key: {name: row[name] for name in counts([])} for key, row in by_day.items()} == {
        key: counts(members) for key, members in days.items()
    }
    assert sum(row["instances"] for row in view.values()) == len(rows)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_deviation_friction_and_support_views_equal_the_base_tables(
    store: ClickHouseProjectionStore, scenario: str
) -> None:
    """deviations_by_step, friction_by_touchpoint_hour and support_contact_drivers."""
    deviations = _base(
        store,
        "deviations",
        "persona, journey_id, journey_version, step, kind, touchpoint, "
        "owner_team, instance_id, customer_id, cost",
        scenario,
    )
    expected: dict[tuple[Any, ...], list[tuple[Any, ...]]] = defaultdict(list)
    for row in deviations:
        expected[row[:7]].append(row)
    view = _keyed(
        _view(store, "deviations_by_step", scenario),
        ("persona", "journey_id", "journey_version", "step", "kind", "touchpoint", "owner_team"),
    )
    assert {key: (r["deviations"], r["instances"], r["customers"], r["cost"]) for key, r in view.items()} == {
        key: (len(m), len({x[7] for x in m}), len({x[8] for x in m}), sum(x[9] for x in m))
        for key, m in expected.items()
    }

    signals = _base(
        store, "friction_signals", "touchpoint, owner_team, kind, occurred_at, customer_id, weight", scenario
    )
    traffic = Counter(
        (tp, _hour(at)) for tp, at in _base(store, "touchpoint_events", "touchpoint, occurred_at", scenario)
    )
    friction: dict[tuple[Any, ...], list[tuple[Any, ...]]] = defaultdict(list)
    for row in signals:
        friction[(row[0], row[1], row[2], _hour(row[3]))].append(row)
    view = _keyed(
        _view(store, "friction_by_touchpoint_hour", scenario), ("touchpoint", "owner_team", "kind", "hour")
    )
    assert set(view) == set(friction)
    for key, members in friction.items():
        got = view[key]
        events = traffic[(key[0], key[3])]
        assert (got["signals"], got["customers"], got["events"]) == (
            len(members),
            len({m[4] for m in members}),
            events,
        )
        assert got["weight"] == pytest.approx(sum(m[5] for m in members))
        assert got["per_1000_events"] == (round(1000 * len(members) / events, 2) if events else None)

    contacts = _base(
        store,
        "support_attribution",
        "ifNull(upstream_touchpoint, '(none)'), ifNull(upstream_owner_team, ''), rule, "
        "support_touchpoint, customer_id",
        scenario,
    )
    drivers: dict[tuple[Any, ...], list[tuple[Any, ...]]] = defaultdict(list)
    for row in contacts:
        drivers[row[:4]].append(row)
    view = _keyed(
        _view(store, "support_contact_drivers", scenario),
        ("upstream_touchpoint", "upstream_owner_team", "rule", "support_touchpoint"),
    )
    assert {key: (r["contacts"], r["customers"]) for key, r in view.items()} == {
        key: (len(m), len({x[4] for x in m})) for key, m in drivers.items()
    }


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_delight_and_quarantine_views_equal_the_base_tables(
    store: ClickHouseProjectionStore, scenario: str
) -> None:
    """delight_by_associate (with the associate's interactions) and quarantine_by_reason."""
    delight = _base(store, "delight_signals", "employee_id, touchpoint, owner_team, customer_id", scenario)
    positives: dict[tuple[Any, ...], list[tuple[Any, ...]]] = defaultdict(list)
    for row in delight:
        if row[0] is not None:
            positives[row[:3]].append(row)
    interactions = Counter(
        (employee, touchpoint)
        for employee, touchpoint, kind in _base(
            store, "touchpoint_events", "employee_id, touchpoint, survey_kind", scenario
        )
        if employee is not None and kind is None
    )
    view = _keyed(_view(store, "delight_by_associate", scenario), ("employee_id", "touchpoint", "owner_team"))
    assert positives, "the simulation names associates in stores"
    assert {key: (r["positive"], r["customers"], r["interactions"]) for key, r in view.items()} == {
        key: (len(m), len({x[3] for x in m}), interactions[(key[0], key[1])]) for key, m in positives.items()
    }
    reasons = Counter(reason for (reason,) in _base(store, "bad_events", "reason", scenario))
    view = _keyed(_view(store, "quarantine_by_reason", scenario), ("reason",))
    assert {key[0]: row["lines"] for key, row in view.items()} == dict(reasons)
    if scenario == "live":
        assert reasons, "the simulation corrupts some lines"


def _stats(scores: list[float]) -> tuple[int, float | None, float | None, float | None, float | None]:
    n = len(scores)
    if n == 0:
        return 0, None, None, None, None
    mean = sum(scores) / n
    if n < 2:
        return n, mean, None, None, None
    sd = math.sqrt(sum((x - mean) ** 2 for x in scores) / (n - 1))
    half = t_975(n - 1) * sd / math.sqrt(n)
    return n, mean, sd, mean - half, mean + half


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_survey_conformance_equals_surveys_joined_to_their_instances(
    store: ClickHouseProjectionStore, scenario: str
) -> None:
    """Every survey response in its instance's group: conformed/deviated, with/without each deviation."""
    instance_of: dict[tuple[str, str], tuple[Any, ...]] = {}
    for customer, iid, persona, jid, version, cost, event_ids in _base(
        store,
        "journey_instances",
        "customer_id, instance_id, persona, journey_id, journey_version, cost, path_event_ids",
        scenario,
    ):
        for event_id in event_ids:
            instance_of[(customer, event_id)] = (iid, persona, jid, version, cost)
    kinds_of: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for iid, kind, step in _base(store, "deviations", "instance_id, kind, step", scenario):
        kinds_of[iid].add((kind, step))
    responses = [
        (kind, float(score), instance_of[(customer, event_id)])
        for customer, event_id, kind, score in _base(
            store, "touchpoint_events", "customer_id, event_id, survey_kind, survey_score", scenario
        )
        if kind is not None and (customer, event_id) in instance_of
    ]
    groups: dict[tuple[Any, ...], list[tuple[float, str]]] = defaultdict(list)
    for kind, score, (iid, persona, jid, version, cost) in responses:
        head = (kind, persona, jid, version)
        groups[(*head, "conformance", "", "", "conformed" if cost == 0 else "deviated")].append((score, iid))
    by_version: dict[tuple[Any, ...], list[tuple[float, str]]] = defaultdict(list)
    for kind, score, (iid, persona, jid, version, _) in responses:
        by_version[(kind, persona, jid, version)].append((score, iid))
    for head, members in by_version.items():
        seen = {pair for _, iid in members for pair in kinds_of[iid]}
        for dev_kind, step in seen:
            for score, iid in members:
                grp = "with" if (dev_kind, step) in kinds_of[iid] else "without"
                groups[(*head, "deviation", dev_kind, step, grp)].append((score, iid))
    view = _keyed(
        _view(store, "survey_conformance", scenario),
        (
            "survey_kind",
            "persona",
            "journey_id",
            "journey_version",
            "comparison",
            "deviation_kind",
            "step",
            "grp",
        ),
    )
    assert responses, "the simulation answers surveys"
    expected_keys = set(groups)
    # A deviation every response's instance has leaves an empty 'without' group: the view keeps it
    # (0 responses, no mean) so the pair is always complete.
    for key, row in view.items():
        if key not in expected_keys:
            assert row["responses"] == 0
            assert row["mean_score"] is None
    assert expected_keys <= set(view)
    for key, members in groups.items():
        got = view[key]
        n, mean, sd, low, high = _stats([score for score, _ in members])
        assert (got["responses"], got["instances"]) == (n, len({iid for _, iid in members})), key
        for name, value in (("mean_score", mean), ("stddev", sd), ("ci_low", low), ("ci_high", high)):
            assert got[name] == (pytest.approx(value, abs=1e-6) if value is not None else None), (key, name)


def test_every_view_is_documented_in_the_readme() -> None:
    """The README lists every view with an example."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    for view in VIEWS:
        assert f"`{view.name}`" in readme, view.name
        assert f"FROM {view.name}(scenario=" in readme, view.name


def test_every_view_answers_through_the_analysts_guarded_sql(store: ClickHouseProjectionStore) -> None:
    """Analysts reach the views through the read-only guard (`touchpath sql`, GET /v1/sql): a view
    called like a table function is allowed there and gives the same rows as the store itself."""
    guard = store.analyst_sql(sessions=1)
    try:
        for view in VIEWS:
            query = f"SELECT * FROM {view.name}(scenario={{s:String}})"
            columns, rows = guard.run(query, {"s": "live"})
            direct_columns, direct_rows = store.query(query, {"s": "live"})
            assert columns == direct_columns, view.name
            assert sorted(map(repr, rows)) == sorted(map(repr, direct_rows)), view.name
            assert rows, f"{view.name} is empty for live"
    finally:
        guard.close()
